"""Why a decision came out as it did, and what another model would have said.

SHAP explanations of one decision and global importance per version, replay of a
logged decision on its archived model, and backtests of a version over a window.
"""
