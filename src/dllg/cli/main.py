"""The `dllg` command: a thin typer layer over the library."""

import typer

from dllg.cli import analyze, bench, compare, handover, models, route, tasks
from dllg.cli.common import argv
from dllg.cli.demo import demo_command
from dllg.cli.eval import eval_command
from dllg.cli.generate import generate_command
from dllg.cli.lm_eval import lm_eval_command
from dllg.cli.merge import merge_command
from dllg.cli.pipeline import collect_command, train_command
from dllg.cli.serve import serve_command
from dllg.cli.shards import merge_shards_command, run_shards_command
from dllg.cli.show import show_command

app = typer.Typer(
    name="dllg",
    help="Combine several LLMs that share a tokenizer into one generator (Dynamic Logit-Level Gating).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("generate")(generate_command)
app.add_typer(models.app, name="models")
app.add_typer(tasks.app, name="tasks")
app.command("collect")(collect_command)
app.command("train")(train_command)
app.command("eval")(eval_command)
app.command("merge-shards")(merge_shards_command)
app.command("run-shards")(run_shards_command)
app.command("lm-eval")(lm_eval_command)
app.add_typer(route.app, name="route")
app.command("merge")(merge_command)
app.command("verify")(tasks.verify_command)
app.add_typer(bench.app, name="bench")
app.command("demo")(demo_command)
app.command("analyze")(analyze.analyze_command)
app.command("analyze-handover")(handover.analyze_handover_command)
app.command("plot")(analyze.plot_command)
app.command("show")(show_command)
app.command("compare")(compare.compare_command)
app.command("serve")(serve_command)


def main() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a loading bar per expert drowns the CLI's own progress output
    app(args=argv(), prog_name="dllg")
