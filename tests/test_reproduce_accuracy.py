"""The accuracy campaign names every record by the stage 3 it trained, so that runs made under earlier defaults of
the recipe are reported as what they were, and a stage 3 already run under another name is not run again."""

import itertools
import math

import pytest

from accuracy_campaign import baselines, draws, plots, protocol, records, runs, tables


def record(method, task, generation, seed=0):
    return {"task": task, "method": method, "seed": seed, "stage1_lm": "lm", "stage3_schedule": generation}


@pytest.mark.parametrize(
    "method, task, generation, reported",
    [
        # today's runs keep their names
        ("ulmfit", "imdb-100", "measured", "ulmfit"),
        ("paper_recipe", "trec-5452", "measured", "paper_recipe"),
        # ulmfit under the paper's defaults, and above 1,000 labels until the few-label schedule's half dropouts
        ("ulmfit", "imdb-100", "paper", "paper_recipe"),
        ("ulmfit", "imdb-5000", "paper", "paper_recipe"),
        # ulmfit under the few-label defaults: today's with the paper's unfreezing
        ("ulmfit", "trec-500", "few-label", "gradual_unfreezing"),
        # full fine-tuning of those days is today's ulmfit; above 1,000 labels it kept the paper's dropouts
        ("no_unfreeze", "imdb-1000", "few-label", "ulmfit"),
        ("no_unfreeze", "trec-5452", "paper", "paper_dropouts"),
        ("no_unfreeze", "trec-500", "paper", "ulmfit (paper schedule, paper dropouts)"),
        ("half_dropout_no_unfreeze", "imdb-5000", "paper", "ulmfit"),
        ("half_dropout", "trec-5452", "paper", "gradual_unfreezing"),
        # methods with changes of their own keep their name, with what differed
        ("no_discr", "trec-100", "few-label", "no_discr (gradual unfreezing)"),
        ("no_stlr", "trec-100", "paper", "no_stlr (paper recipe)"),
        ("frozen_head", "imdb-1000", "few-label", "frozen_head"),  # no unfreezing either way
        ("frozen_head", "trec-5452", "paper", "frozen_head (paper dropouts)"),
        ("ulmfit_tuned", "trec-5452", "tuned", "ulmfit_tuned (gradual unfreezing)"),
        # baselines have no stage 3 of ours
        ("tfidf", "imdb-100", None, "tfidf"),
    ],
)
def test_a_record_is_reported_as_the_stage_3_it_trained(method, task, generation, reported):
    assert records.reported_method(record(method, task, generation)) == reported


def test_today_s_generation_is_the_recipe_s_defaults():
    """If hf_ulmfit.recipe changes the classifier's defaults, the campaign needs a new generation name: today's
    settings must be what the stages actually use."""
    from hf_ulmfit.recipe import few_label_schedule
    from hf_ulmfit.stages import stage_arguments

    model_args, _, args = stage_arguments("train-classifier", output_dir="out")
    assert protocol.recipe_settings(protocol.RECIPE, 5452) == {
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "num_train_epochs": args.num_train_epochs,
        "dropout_multiplier": model_args.dropout_multiplier,
        "gradual_unfreezing": args.gradual_unfreezing,
    }
    assert protocol.recipe_settings(protocol.RECIPE, 100) == {
        **protocol.recipe_settings(protocol.RECIPE, 5452),
        **few_label_schedule(100),
    }
    assert protocol.recipe_settings("paper", 100) == protocol.PAPER_STAGE3


def test_a_stage_3_already_run_under_another_name_is_not_run_again():
    done = {records.run_key(record("no_unfreeze", "imdb-1000", "few-label", seed=1))}
    assert records.run_key(record("ulmfit", "imdb-1000", "measured", seed=1)) in done
    assert records.run_key(record("ulmfit", "imdb-1000", "measured", seed=2)) not in done
    assert records.run_key(record("gradual_unfreezing", "imdb-1000", "measured", seed=1)) not in done


def test_an_interrupted_run_resumes_only_from_a_complete_checkpoint(tmp_path):
    """Stage 3 with all IMDb labels outlasts a session: a new ``run`` continues from the last checkpoint the
    trainer finished writing (one with its trainer_state.json), and the checkpoints go once it ends."""
    assert not runs.resuming(tmp_path)
    (tmp_path / "checkpoint-200").mkdir()
    (tmp_path / "checkpoint-200" / "model.safetensors").write_bytes(b"")  # no trainer state: not complete
    assert not runs.resuming(tmp_path)
    (tmp_path / "checkpoint-200" / "trainer_state.json").write_text("{}")
    assert runs.resuming(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    runs.drop_checkpoints(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    assert protocol.RUN_SETTINGS["save_strategy"] == "steps"  # stage 3 checkpoints too


def test_imdb_s_stage_2_budget_counts_reviews_read():
    """Up to all 75,000 reviews, one pass over a sample of that many; beyond, whole passes over all of them (the
    validation share is then the same 5% of the same file, so the perplexities compare)."""
    assert protocol.imdb_stage2_budget(20000) == (20000, 1)
    assert protocol.imdb_stage2_budget(75000) == (75000, 1)
    assert protocol.imdb_stage2_budget(150000) == (75000, 2)
    assert draws.lm_corpus_file("imdb", 150000) == draws.lm_corpus_file("imdb", 75000)
    assert protocol.lm_finetune_settings("imdb", 150000)["num_train_epochs"] == 2
    assert protocol.lm_finetune_settings("imdb", 20000)["num_train_epochs"] == 1
    with pytest.raises(SystemExit, match="multiple of 75000"):
        protocol.imdb_stage2_budget(100000)


def test_another_stage_2_budget_keeps_its_own_stage_3_folders(tmp_path):
    """The compute study trains the same task, method and seed from another stage-2 budget: its classifiers and
    held-out scores go elsewhere, so that it neither overwrites the main runs' logs nor resumes their checkpoints."""

    def folder(imdb_lm_docs, task="imdb-1000"):
        campaign = runs.Campaign("awd-lstm-wiki-en", tmp_path, tmp_path / "data", imdb_lm_docs)
        return runs.classifier_dir(campaign, task, "ulmfit", 0)

    main = folder(protocol.IMDB_LM_TEXTS)
    assert main.name == f"imdb-1000-ulmfit-{protocol.RECIPE}-s0"
    assert len({main, folder(20000), folder(150000)}) == 3
    assert folder(20000, "trec-500") == folder(protocol.IMDB_LM_TEXTS, "trec-500")  # TREC-6's stage 2 is one


def test_a_repeated_stage_2_keeps_its_own_folders_and_is_reported_beside_the_main_one(tmp_path):
    """``--stage2_seed`` repeats stage 2 to measure how far two stage-2 runs move the classifiers: its LM and
    classifiers go to folders of their own, its records are runs of their own, and the report sets them beside
    the main runs (seed 0) of the same study instead of among them."""

    def campaign(stage2_seed, imdb_lm_docs=protocol.IMDB_LM_TEXTS):
        return runs.Campaign("lm", tmp_path, tmp_path / "data", imdb_lm_docs, stage2_seed=stage2_seed)

    main, repeat = campaign(0), campaign(1)
    assert main.lm_dir("imdb") == tmp_path / "lm-imdb-75000"  # the main runs' folders keep their names
    assert repeat.lm_dir("imdb") != main.lm_dir("imdb")
    assert repeat.lm_dir("trec") != main.lm_dir("trec")
    assert repeat.lm_dir("imdb") != campaign(1, 150000).lm_dir("imdb")
    assert runs.classifier_dir(repeat, "imdb-1000", "ulmfit", 0) != runs.classifier_dir(
        main, "imdb-1000", "ulmfit", 0
    )

    def result(seed, accuracy, stage2_seed=None):
        r = {**record("ulmfit", "imdb-1000", "measured", seed), "stage2_docs": 75000, "accuracy": accuracy}
        return {**r, "stage2_seed": stage2_seed} if stage2_seed else r

    first = [result(seed, 0.78 + seed / 100) for seed in range(3)]
    again = [result(seed, 0.76 + seed / 100, stage2_seed=1) for seed in range(3)]
    assert records.run_key(again[0]) != records.run_key(first[0])
    assert records.main_runs(first + again, "lm", 75000) == first
    table = tables.stage2_seed_table(first + again + [result(0, 0.5) | {"task": "imdb-500"}])
    assert list(table.index) == ["imdb-1000, ulmfit, from lm"]  # the unrepeated study is left out
    assert dict(table.iloc[0]) == {"stage-2 seed 0": "79.0 ± 1.0 (3)", "stage-2 seed 1": "77.0 ± 1.0 (3)"}
    assert tables.stage2_seed_table(first).empty


def test_the_stage_2_compute_plot_draws_fine_tuning_and_feature_extraction(tmp_path):
    """The stage-2 panel has a line per study method run at two budgets, the feature-extraction arms among them;
    a task run at one budget only gets no plot."""
    import argparse

    import matplotlib.pyplot as plt

    def run(method, stage2_docs, seed, accuracy):
        return {**record(method, "imdb-1000", None, seed), "stage1_tokens": 27e6,
                "stage2_docs": stage2_docs, "stage2_tokens": stage2_docs * 310.0, "accuracy": accuracy}  # fmt: skip

    args = argparse.Namespace(imdb_lm_docs=75000, stage1_lm="lm")
    one_budget = [run(method, 75000, seed, 0.7) for method in ("ulmfit", "features_lr") for seed in (0, 1)]
    plots.plot_accuracy_by_compute(one_budget, "imdb-1000", args, tmp_path / "one.png")
    assert not (tmp_path / "one.png").exists()

    two_budgets = one_budget + [
        run(method, 20000, seed, 0.6) for method in ("ulmfit", "features_lr") for seed in (0, 1)
    ]
    plots.plot_accuracy_by_compute(two_budgets, "imdb-1000", args, tmp_path / "two.png")
    assert (tmp_path / "two.png").stat().st_size > 0
    stage2_panel = plt.gcf().axes[-1]
    lines = {bars.get_label(): bars.lines[0] for bars in stage2_panel.containers}
    assert sorted(lines) == ["features_lr", "ulmfit"]
    assert {name: line.get_linestyle() for name, line in lines.items()} == {
        "features_lr": "--",
        "ulmfit": "-",
    }
    assert list(lines["ulmfit"].get_xdata()) == pytest.approx([20000 * 310 / 1e6, 75000 * 310 / 1e6])
    assert list(lines["ulmfit"].get_ydata()) == pytest.approx([60.0, 70.0])
    plt.close("all")


def test_a_balanced_draw_takes_equal_shares_as_far_as_each_label_allows():
    import pandas as pd

    available = pd.Series({"rare": 3, "common": 40, "usual": 20})
    assert draws.label_quota(available, 30) == {"rare": 3, "usual": 13, "common": 14}
    assert draws.label_quota(available, 9) == {"rare": 3, "usual": 3, "common": 3}
    assert draws.label_quota(available, 1000) == {"rare": 3, "usual": 20, "common": 40}
    frame = pd.DataFrame(
        {"text": [str(i) for i in range(63)], "label": ["rare"] * 3 + ["common"] * 40 + ["usual"] * 20}
    )
    drawn = draws.balanced_draw(frame, 30, seed=0)
    assert drawn["label"].value_counts().to_dict() == {"common": 14, "usual": 13, "rare": 3}
    assert drawn["text"].is_unique


CLASS_COUNTS = [[50, 50], [3, 1], [84, 84, 83, 83, 83, 83], [5, 2, 1]]


def enumerated_setfit_steps(class_counts: list[int]) -> int:
    """SetFit's default pairs enumerated one by one: same-class pairs with replacement, cross-class pairs, the
    smaller set drawn again up to the larger; batches of 16."""
    labels = [label for label, n in enumerate(class_counts) for _ in range(n)]
    pairs = list(itertools.combinations_with_replacement(range(len(labels)), 2))
    same = sum(labels[a] == labels[b] for a, b in pairs)
    return math.ceil(2 * max(same, len(pairs) - same) / 16)


@pytest.mark.parametrize("class_counts", CLASS_COUNTS)
def test_setfit_s_default_steps_count_its_oversampled_pairs(class_counts):
    assert baselines.setfit_default_steps(class_counts) == enumerated_setfit_steps(class_counts)


@pytest.mark.parametrize("class_counts", CLASS_COUNTS)
def test_setfit_s_own_sampler_makes_those_pairs(class_counts):
    setfit = pytest.importorskip("setfit")
    from setfit.sampler import ContrastiveDataset

    arguments = setfit.TrainingArguments()
    assert (arguments.embedding_batch_size, arguments.embedding_num_epochs) == (16, 1)
    assert (arguments.sampling_strategy, arguments.num_iterations, arguments.max_steps) == (
        "oversampling",
        None,
        -1,
    )
    labels = [label for label, n in enumerate(class_counts) for _ in range(n)]
    sampled = ContrastiveDataset([str(i) for i in range(len(labels))], labels, multilabel=False)
    assert math.ceil(len(sampled) / 16) == enumerated_setfit_steps(class_counts)


@pytest.mark.skipif(not (protocol.DATA / "trec").exists(), reason="needs ../shared/data (TREC-6's labels)")
def test_setfit_s_cost_is_estimated_at_the_pace_of_the_largest_run_so_far():
    """A row that ran estimates what it measured; a row that did not, at the pace of the largest run below it."""
    runs_seconds = {"trec-100": [240.0, 260.0], "trec-500": [4000.0, 5000.0]}
    results = [
        {"task": task, "method": "setfit", "seconds": s} for task, ss in runs_seconds.items() for s in ss
    ] + [{"task": "trec-5452", "method": "tfidf", "seconds": 1.0}]
    table = tables.setfit_cost_table(results)
    steps = {
        task: int(table.loc[protocol.task_label(task), "steps a seed"].replace(",", ""))
        for task in protocol.TASKS
    }
    hours = table["hours a seed (estimated)"]
    assert table.loc[protocol.task_label("trec-500"), "minutes a seed (run)"] == "75"
    assert hours[protocol.task_label("trec-100")] == f"{250 / 3600:,.1f}"
    assert hours[protocol.task_label("trec-500")] == f"{4500 / 3600:,.1f}"
    pace_of_500 = 4500 / steps["trec-500"]
    assert hours[protocol.task_label("trec-5452")] == f"{steps['trec-5452'] * pace_of_500 / 3600:,.1f}"
    assert hours[protocol.task_label("imdb-100")] == ""  # no IMDb run, no pace to estimate from


def test_report_draws_the_plots_the_shipped_cards_show():
    """The shipped LMs' cards link CAMPAIGN_PLOTS, which ``report --card_dirs`` copies from what it drew."""
    from hf_ulmfit.cards import CAMPAIGN_PLOTS

    drawn = [plots.labels_plot_name(corpus) for corpus in protocol.LABEL_COUNTS]
    drawn += [plots.compute_plot_name(task) for task in protocol.COMPUTE_STUDY_TASKS]
    assert sorted(drawn) == sorted(CAMPAIGN_PLOTS)


def test_the_compute_table_has_a_row_per_lm_and_stage_2_budget():
    """``report`` prints the numbers behind the compute plots: one row per (stage-1 tokens, stage-2 tokens), a
    checkpoint taken midway through stage 1 apart from a stage 1 of the same tokens run to its end, the study's
    methods as columns, mean ± std over seeds; repeats of a stage 2 and the baselines stay out."""
    import statistics

    def run(method, stage1_tokens, stage2_tokens, seed, accuracy, **extra):
        return {**record(method, "imdb-1000", None, seed), "stage1_tokens": stage1_tokens,
                "stage2_tokens": stage2_tokens, "accuracy": accuracy, **extra}  # fmt: skip

    shipped = [run("ulmfit", 27e6, 23.4e6, seed, a) for seed, a in enumerate((0.79, 0.80, 0.81))]
    assert tables.compute_table(shipped, "imdb-1000").empty  # one LM and budget: nothing to compare

    random_weights = [run("ulmfit", 0, 23.4e6, seed, a) for seed, a in enumerate((0.775, 0.79, 0.80))]
    more_stage2 = [run("features_lr", 27e6, 46.8e6, 0, 0.73)]
    checkpoint = [run("ulmfit", 6.7e6, 23.4e6, 0, 0.78, stage1_finished=False)]
    shorter_stage1 = [run("ulmfit", 6.7e6, 23.4e6, 0, 0.795, stage1_lm="lm-6.7M")]
    left_out = [
        run("ulmfit", 0, 23.4e6, 0, 0.5, stage2_seed=1),  # a repeated stage 2 has a table of its own
        run("tfidf", 0, None, 0, 0.9),  # a baseline has no LM
        {**run("ulmfit", 0, 23.4e6, 0, 0.5), "task": "imdb-500"},
    ]
    table = tables.compute_table(
        shipped + random_weights + more_stage2 + checkpoint + shorter_stage1 + left_out, "imdb-1000"
    )
    assert list(table.index) == [
        "0.0M, 23.4M", "6.7M (mid-run checkpoint), 23.4M", "6.7M, 23.4M", "27.0M, 23.4M", "27.0M, 46.8M"
    ]  # fmt: skip
    assert table.loc["6.7M (mid-run checkpoint), 23.4M", "ulmfit"] == "78.0 (1)"
    assert table.loc["6.7M, 23.4M", "ulmfit"] == "79.5 (1)"
    assert list(table.columns) == ["ulmfit", "features_lr"]
    scores = [100 * r["accuracy"] for r in random_weights]
    assert table.loc["0.0M, 23.4M", "ulmfit"] == (
        f"{statistics.mean(scores):.1f} ± {statistics.stdev(scores):.1f} (3)"
    )
    assert table.loc["27.0M, 23.4M", "ulmfit"] == "80.0 ± 1.0 (3)"
    assert table.loc["27.0M, 46.8M", "features_lr"] == "73.0 (1)"
    assert table.loc["27.0M, 46.8M", "ulmfit"] == ""


def test_a_checkpoint_taken_midway_is_told_from_a_finished_stage_1(tmp_path):
    """Records say whether stage 1 ended its learning-rate schedule: a Trainer checkpoint before ``max_steps`` did
    not (its rate is still near STLR's peak); a finished run, the shipped LM and random weights did."""
    import json

    def lm(name, global_step, max_steps):
        folder = tmp_path / name
        folder.mkdir()
        state = {"global_step": global_step, "max_steps": max_steps}
        (folder / "trainer_state.json").write_text(json.dumps(state))
        return folder

    assert not runs.schedule_finished(lm("checkpoint-1500", 1500, 6000))
    assert runs.schedule_finished(lm("finished", 1500, 1500))
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "measurements.json").write_text(json.dumps({"training": {"tokens_seen": 27e6}}))
    assert runs.schedule_finished(shipped)


def test_the_stage_1_compute_plot_draws_a_shorter_finished_stage_1_apart(tmp_path):
    """The stage-1 panel's line follows the shipped LM's run (random weights, its mid-run checkpoints, the end);
    a shorter stage 1 run to the end of its schedule, at a checkpoint's tokens, is a point of its own."""
    import argparse

    import matplotlib.pyplot as plt

    def run(stage1_tokens, accuracy, **extra):
        return {**record("ulmfit", "trec-5452", None), "stage1_tokens": stage1_tokens, "stage2_docs": None,
                "stage2_tokens": 8e5, "accuracy": accuracy, **extra}  # fmt: skip

    results = [
        run(0, 0.81, stage1_lm="lm-random"),
        run(6.7e6, 0.92, stage1_lm="lm/checkpoint-1500", stage1_finished=False),
        run(6.7e6, 0.93, stage1_lm="lm-1500"),
        run(27e6, 0.94),
    ]
    args = argparse.Namespace(imdb_lm_docs=75000, stage1_lm="lm")
    plots.plot_accuracy_by_compute(results, "trec-5452", args, tmp_path / "stage1.png")
    series = {bars.get_label(): bars.lines[0].get_data() for bars in plt.gcf().axes[0].containers}
    assert sorted(series) == ["ulmfit", "ulmfit, shorter stage-1 runs, each to its end"]
    assert list(series["ulmfit"][0]) == pytest.approx([0, 6.7, 27])
    assert list(series["ulmfit"][1]) == pytest.approx([81, 92, 94])
    star = series["ulmfit, shorter stage-1 runs, each to its end"]
    assert list(star[0]) == pytest.approx([6.7]) and list(star[1]) == pytest.approx([93])


def test_the_labels_plot_draws_each_method_s_mean_and_keeps_its_legend_off_the_lines(tmp_path):
    """One line per method, its mean over seeds at each label count; the legend lies beside the axes, where it
    covers no point."""
    import matplotlib.pyplot as plt

    def run(method, task, seed, accuracy):
        return {**record(method, task, "measured", seed), "accuracy": accuracy}

    results = [
        run("ulmfit", "imdb-100", 0, 0.60),
        run("ulmfit", "imdb-100", 1, 0.70),
        run("ulmfit", "imdb-25000", 0, 0.91),
        run("tfidf", "imdb-100", 0, 0.74),
        run("tfidf", "imdb-25000", 0, 0.91),
        run("ulmfit", "trec-100", 0, 0.5),  # another corpus: not in the IMDb plot
    ]
    plots.plot_accuracy_by_labels(results, "imdb", tmp_path / "imdb.png")
    axes = plt.gcf().axes[0]
    series = {bars.get_label(): bars.lines[0].get_data() for bars in axes.containers}
    assert sorted(series) == ["tfidf", "ulmfit"]
    assert list(series["ulmfit"][0]) == [100, 25000]
    assert list(series["ulmfit"][1]) == pytest.approx([65, 91])
    renderer = plt.gcf().canvas.get_renderer()
    legend_box = axes.get_legend().get_window_extent(renderer)
    axes_box = axes.get_window_extent(renderer)
    assert legend_box.x0 > axes_box.x1


def test_the_compute_plot_s_one_legend_names_the_lines_of_both_panels(tmp_path):
    """With a stage-1 and a stage-2 panel, the legend (in the last panel) names the stage-1 panel's star too."""
    import argparse

    import matplotlib.pyplot as plt

    def run(method, stage1_tokens, stage2_docs, accuracy, **extra):
        return {**record(method, "imdb-1000", None), "stage1_tokens": stage1_tokens, "stage2_docs": stage2_docs,
                "stage2_tokens": stage2_docs * 310.0, "accuracy": accuracy, **extra}  # fmt: skip

    results = [
        run("ulmfit", 0, 75000, 0.79, stage1_lm="lm-random"),
        run("ulmfit", 6.7e6, 75000, 0.80, stage1_lm="lm-1500"),
        run("ulmfit", 27e6, 75000, 0.80),
        run("features_lr", 27e6, 75000, 0.72),
        run("ulmfit", 27e6, 150000, 0.81),
        run("features_lr", 27e6, 150000, 0.73),
    ]
    args = argparse.Namespace(imdb_lm_docs=75000, stage1_lm="lm")
    plots.plot_accuracy_by_compute(results, "imdb-1000", args, tmp_path / "both.png")
    stage1_panel, stage2_panel = plt.gcf().axes
    assert stage1_panel.get_legend() is None
    assert sorted(text.get_text() for text in stage2_panel.get_legend().get_texts()) == [
        "features_lr",
        "ulmfit",
        "ulmfit, shorter stage-1 runs, each to its end",
    ]


def test_a_new_record_names_what_identifies_its_run():
    """A method reading the stage-2 LM names the IMDb stage-2 budget and a repeated stage 2's seed; a stage 3 of
    ours names the recipe's generation; the baselines name neither."""
    stage1 = {"stage1_lm": "lm", "stage1_tokens": 27e6, "stage1_finished": True}
    ulmfit = records.new_record("imdb-1000", "ulmfit", 2, stage1, 150000, 0)
    assert ulmfit == {"task": "imdb-1000", "method": "ulmfit", "seed": 2, **stage1, "stage2_docs": 150000,
                      "stage3_schedule": protocol.RECIPE}  # fmt: skip
    assert records.new_record("imdb-1000", "ulmfit", 2, stage1, 150000, 1)["stage2_seed"] == 1
    assert records.new_record("trec-500", "ulmfit", 0, stage1, 150000, 0)["stage2_docs"] is None
    tfidf = records.new_record("imdb-1000", "tfidf", 0, stage1, 150000, 1)
    assert (tfidf["stage2_docs"], tfidf["stage3_schedule"], "stage2_seed" in tfidf) == (None, None, False)
    assert records.new_record("imdb-100", "features_lr", 0, stage1, 75000, 0)["stage3_schedule"] is None
