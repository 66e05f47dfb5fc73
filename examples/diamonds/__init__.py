"""The diamonds example (ggplot2, a multiclass task: the cut grade, five classes): spec and CSV fetch."""
