"""CLI commands of the prompts stage: ``medimp prompts build|show|augment|check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medimp.cli._common import console, fail, is_interactive, path_option

prompts_app = typer.Typer(
    name="prompts",
    help="Clinical table -> text prompts: build, show, paraphrase (augment) and check banks.",
    no_args_is_help=True,
)


def _cohort(path: Path):
    from medimp.data import read_cohort

    return read_cohort(path)


_OLD_COHORT = "Deprecated: the positional COHORT; use --cohort."


def _study(path: Path | None):
    if path is None:
        return None
    from medimp.study import load_study

    return load_study(path)


@prompts_app.command("build")
def build_cmd(
    old_cohort: Annotated[Path | None, typer.Argument(
        hidden=True, help=_OLD_COHORT, show_default=False)] = None,
    *,
    cohort_opt: Annotated[Path | None, typer.Option(
        "--cohort", help="Cohort directory (study.yaml, exams.csv, ...).", show_default=False)
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write (atomically).")],
    bank: Annotated[
        Path | None,
        typer.Option(help="Paraphrase bank (.txt gpt_augs or .yaml); default: the rules bank."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the synonyms of labels.")] = 0,
    wording: Annotated[str, typer.Option(
        help="original (the study's templates, MEDIMP's) | clinician (ranges and units) | "
             "clinician_fine (the same, finer bins); see docs/prompts.md")] = "original",
) -> None:
    """Write every exam's N paraphrased prompts (patient_id, exam, variant, prompt)."""
    from medimp.prompts import build_prompts, build_prompts_from_tables
    from medimp.prompts.build import write_prompts
    from medimp.prompts.wording import WORDINGS, study_for

    cohort = path_option(cohort_opt, old_cohort, option="--cohort", old_name="COHORT")
    if wording not in WORDINGS:
        fail(f"--wording {wording!r}: choose one of {', '.join(WORDINGS)}")
    if wording != "original" and bank is not None:
        fail(f"--wording {wording} writes its own sentences (paraphrased by the rules bank); "
             "--bank paraphrases the study's original templates: give one or the other")
    data = _cohort(cohort)
    if wording == "original":
        df = build_prompts(data, bank=bank, seed=seed)
    else:
        df = build_prompts_from_tables(study_for(data.study, wording), data.exams,
                                       data.patients, seed=seed, keys=data.exam_keys())
    write_prompts(df, out)
    n_exams = df.groupby(["patient_id", "exam"]).ngroups if len(df) else 0
    console.print(
        f"wrote {len(df)} prompts for {n_exams} exams "
        f"({df['variant'].nunique() if len(df) else 0} variants) to {out}",
        markup=False,
    )


@prompts_app.command("show")
def show_cmd(
    old_cohort: Annotated[Path | None, typer.Argument(
        hidden=True, help=_OLD_COHORT, show_default=False)] = None,
    *,
    cohort_opt: Annotated[Path | None, typer.Option(
        "--cohort", help="Cohort directory.", show_default=False)] = None,
    patient: Annotated[str, typer.Option("--patient", "-p", help="Patient id.")],
    exam: Annotated[
        str | None, typer.Option("--exam", "-e", help="One exam (default: all).")
    ] = None,
    bank: Annotated[
        Path | None, typer.Option(help="Paraphrase bank; default: the rules bank.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the synonyms of labels.")] = 0,
) -> None:
    """Print a patient's table row and prompts side by side."""
    from rich.table import Table

    from medimp.prompts.build import explain_exam

    cohort = path_option(cohort_opt, old_cohort, option="--cohort", old_name="COHORT")
    c = _cohort(cohort)
    exams = c.exams[c.exams["patient_id"].astype(str) == patient]["exam"].astype(str)
    keys = [e for e in dict.fromkeys(exams) if exam is None or e == exam]
    if not keys:
        fail(f"{cohort}: no exam {exam or ''} of patient {patient!r} in exams.csv")
    for e in keys:
        rows, prompts = explain_exam(
            c.study, c.exams, c.patients, patient, e, bank=bank, seed=seed
        )
        values = Table(title="clinical values", show_lines=False)
        for col in ("variable", "column", "value", "words"):
            values.add_column(col, no_wrap=True)
        for name, col, val, words in rows:
            values.add_row(escape(name), escape(col), escape(str(val)),
                           escape(words) if words else "[dim](missing: sentence dropped)")
        texts = Table(title=f"{len(prompts)} prompts", show_header=False)
        texts.add_column("#", justify="right")
        texts.add_column("prompt")
        for i, p in enumerate(prompts):
            texts.add_row(str(i), escape(p))
        console.rule(escape(f"patient {patient} exam {e}"))
        if console.width >= 140:  # side by side where there is room, else one below the other
            grid = Table.grid(padding=(0, 2))
            grid.add_column(no_wrap=True)
            grid.add_column(ratio=1)
            grid.add_row(values, texts)
            console.print(grid)
        else:
            console.print(values)
            console.print(texts)


@prompts_app.command("augment")
def augment_cmd(
    templates: Annotated[
        str,
        typer.Argument(
            help="'default', a study.yaml, or a bank (.txt/.yaml) whose sources to use."
        ),
    ] = "default",
    *,
    out: Annotated[Path, typer.Option("--out", "-o", help="Bank to write (.yaml or .txt).")],
    n: Annotated[
        int, typer.Option("--n", help="Number of variants (the source is variant 0).")
    ] = 10,
    backend: Annotated[str, typer.Option(
        help="Paraphrasing backend: rules (offline), openai (an OpenAI-compatible endpoint), "
        "transformers (a local model), or another registered one.")] = "rules",
    study: Annotated[
        Path | None, typer.Option(help="study.yaml mapping slots to variables.")
    ] = None,
    cohort: Annotated[
        Path | None,
        typer.Option(help="Cohort whose table values must never be sent (privacy guard; "
                     "openai needs it or --no-cohort)."),
    ] = None,
    no_cohort: Annotated[bool, typer.Option(
        "--no-cohort", help="Say that the templates protect no cohort (openai refuses to send "
        "without --cohort or this).")] = False,
    base_url: Annotated[str | None, typer.Option(
        help="openai: OpenAI-compatible endpoint base URL (default: $OPENAI_BASE_URL, else "
        "http://localhost:8000/v1).", show_default=False)] = None,
    model: Annotated[str | None, typer.Option(
        help="openai: model name (default: $OPENAI_MODEL, else gpt-4o-mini).",
        show_default=False)] = None,
    api_key_env: Annotated[str | None, typer.Option(
        help="openai: environment variable holding the API key (default: OPENAI_API_KEY).",
        show_default=False)] = None,
    model_path: Annotated[
        Path | None, typer.Option(help="transformers: local causal LM folder.")
    ] = None,
    min_similarity: Annotated[
        float, typer.Option(help="MiniLM similarity a paraphrase needs.")
    ] = 0.6,
    max_rounds: Annotated[int, typer.Option(help="LLM requests at most in this run.")] = 5,
    retries: Annotated[int | None, typer.Option(
        help="openai: retries on 429/5xx/timeouts/bad replies (default: 5).",
        show_default=False)] = None,
    timeout: Annotated[float | None, typer.Option(
        help="openai: seconds per request (default: 60).", show_default=False)] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write the validation report (JSON) here.")
    ] = None,
) -> None:
    """Make a paraphrase bank of N validated variants (resumes an interrupted LLM run)."""
    from medimp._io import atomic_write_text
    from medimp.prompts import NotEnoughVariantsError
    from medimp.prompts.backends import create_backend
    from medimp.prompts.paraphrase import augment, load_templates
    from medimp.prompts.privacy import cohort_values

    if cohort is not None and no_cohort:
        fail("give either --cohort (whose values must never be sent) or --no-cohort, not both")
    try:
        st, sources = load_templates(templates, _study(study))
        forbidden = None
        if cohort is not None:
            c = _cohort(cohort)
            forbidden = cohort_values({"patients.csv": c.patients, "exams.csv": c.exams})
        options = {"base_url": base_url, "model": model, "api_key_env": api_key_env,
                   "max_retries": retries, "timeout": timeout, "model_path": model_path}
        client = create_backend(backend, forbidden=forbidden, no_cohort=no_cohort,
                                **{k: v for k, v in options.items() if v is not None})
        from rich.progress import Progress

        with Progress(console=console, transient=True, disable=not is_interactive()) as bar:
            task = bar.add_task("paraphrasing", total=n)
            res = augment(
                st,
                client,
                n=n,
                sources=sources,
                forbidden=forbidden,
                min_similarity=min_similarity,
                max_rounds=max_rounds,
                out=out,
                progress=lambda k, total: bar.update(task, completed=k, total=total),
            )
    except NotEnoughVariantsError as exc:  # the run worked but fell short: report why, exit 1
        if report is not None and exc.report is not None:
            atomic_write_text(report, json.dumps(exc.report.to_dict(), indent=1))
        fail(str(exc), 1)
    if report is not None:
        atomic_write_text(report, json.dumps(res.report.to_dict(), indent=1))
    console.print(
        f"wrote {res.bank.n} variants ({backend}) to {out}; "
        f"{len(res.report.rejected)} candidate(s) rejected",
        markup=False,
    )


@prompts_app.command("check")
def check_cmd(
    bank: Annotated[Path, typer.Argument(help="Bank to check (.txt gpt_augs or .yaml).")],
    *,
    study: Annotated[
        Path | None, typer.Option(help="study.yaml mapping slots to variables.")
    ] = None,
    min_similarity: Annotated[
        float, typer.Option(help="MiniLM similarity a paraphrase needs.")
    ] = 0.6,
    report: Annotated[
        Path | None, typer.Option(help="Write the validation report (JSON) here.")
    ] = None,
) -> None:
    """Validate every variant of a bank; exit 1 if any is rejected."""
    from rich.table import Table

    from medimp._io import atomic_write_text
    from medimp.prompts.validate import check_bank

    rep = check_bank(bank, _study(study), min_similarity=min_similarity)
    if report is not None:
        atomic_write_text(report, json.dumps(rep.to_dict(), indent=1))
    if rep.rejected:
        table = Table(title=escape(f"{bank}: rejected variants"))
        table.add_column("variant", justify="right")
        table.add_column("reasons")
        for r in rep.rejected:
            table.add_row(str(r.index), escape("\n".join(r.reasons)))
        console.print(table)
    sims = [s for r in rep.results for s in r.similarity if s is not None]
    low = f", lowest similarity {min(sims):.2f}" if sims else ""
    console.print(f"{bank}: {len(rep.accepted)} of {len(rep.results)} variants valid{low}",
                  markup=False)
    if rep.rejected:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.add_typer(prompts_app, name="prompts")
