"""Events: the one field list (schema), rendering and parsing of lines."""
