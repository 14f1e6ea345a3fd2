"""Views of fused answers: which expert wrote each token, as a self-contained HTML page."""

from dllg.view.answer_page import expert_hues, render_answer_html, write_answer_html

__all__ = ["expert_hues", "render_answer_html", "write_answer_html"]
