"""Events: the one field list (schema), rendering (render) and parsing (parse) of lines, the analysis point (point)."""
