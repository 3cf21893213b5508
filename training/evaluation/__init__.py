"""Explanation-quality metrics and reports."""
