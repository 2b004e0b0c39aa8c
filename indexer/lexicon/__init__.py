"""Words for the verbalization in other languages than English (data plus the rules that use it)."""
