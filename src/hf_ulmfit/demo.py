"""``hf-ulmfit demo``: ULMFiT's stages 2 and 3 on the small samples shipped in ``hf_ulmfit/samples``, starting
from the shipped stage-1 LM (``awd-lstm-wiki-en``), then a ``pipeline("text-classification")`` on the result.
Sized to finish within about ten minutes on two CPU cores; see ``samples/README.md`` for what the samples are
and where they come from."""

import logging
import time
from pathlib import Path

from transformers import pipeline

from . import stages
from .pretrained import DEFAULT_LANGUAGE_MODEL, pretrained_path

logger = logging.getLogger(__name__)

SAMPLES = Path(__file__).parent / "samples"
EXAMPLES = [
    "A moving story with wonderful performances; I was gripped from start to finish.",
    "Dull, predictable and far too long. I want those two hours of my life back.",
    "The plot was thin, but the music and the photography were beautiful.",
]

# What the demo changes from the recipe (hf_ulmfit.recipe), so that two stages fit in minutes on two cores.
DEMO_LM_REVIEWS = 1500  # stage 2 reads 1,500 of the 2,500 unlabelled reviews, one epoch
DEMO_CLASSIFIER_EPOCHS = 3  # 94 steps of batch 32 over the 1,000 labelled reviews
DEMO_DROPOUT_MULTIPLIER = 0.5  # little text and few labels: the paper's 1.0 underfits in so few steps


def run_demo(output_dir: str = "ulmfit-demo", seed: int = 42) -> dict[str, dict[str, float]]:
    """Stage 1 is the shipped LM; runs stage 2 (fine-tune it on IMDb reviews) and stage 3 (a sentiment
    classifier on 1,000 labelled reviews, evaluated on 500 test reviews); returns each stage's metrics."""
    root = Path(output_dir)
    results, started = {}, time.time()

    def stage(name, run, **arguments):
        """One stage with the recipe's defaults and the demo's own settings."""
        logger.info("===== %s =====", name)
        demo = {"output_dir": str(root / name), "seed": seed, "save_strategy": "no", "logging_steps": 20}
        results[name] = run(**demo, disable_tqdm=False, dataloader_pin_memory=False, **arguments)
        logger.info("%s done after %.0f s in total", name, time.time() - started)

    print(
        f"Stage 1, the general-domain LM: {DEFAULT_LANGUAGE_MODEL} ({pretrained_path(DEFAULT_LANGUAGE_MODEL)})"
    )
    stage(
        "2-finetune-lm",
        stages.finetune_language_model,
        model_name_or_path=DEFAULT_LANGUAGE_MODEL,
        dropout_multiplier=DEMO_DROPOUT_MULTIPLIER,
        train_file=str(SAMPLES / "imdb_unlabelled.parquet"),
        max_train_samples=DEMO_LM_REVIEWS,
        num_train_epochs=1,
    )
    stage(
        "3-classifier",
        stages.train_classifier,
        model_name_or_path=str(root / "2-finetune-lm"),
        dropout_multiplier=DEMO_DROPOUT_MULTIPLIER,
        train_file=str(SAMPLES / "imdb_train.parquet"),
        validation_file=str(SAMPLES / "imdb_test.parquet"),
        num_train_epochs=DEMO_CLASSIFIER_EPOCHS,
        per_device_train_batch_size=32,
        eval_strategy="no",
    )
    classify = pipeline("text-classification", model=str(root / "3-classifier"))
    print("\nULMFiT demo results")
    print(f"  stage 2 validation perplexity (IMDb):      {results['2-finetune-lm']['eval_perplexity']:.1f}")
    print(f"  stage 3 test accuracy (500 IMDb reviews):  {results['3-classifier']['eval_accuracy']:.3f}")
    print(f"  wall time: {time.time() - started:.0f} s; classifier saved in {root / '3-classifier'}\n")
    for text, prediction in zip(EXAMPLES, classify(EXAMPLES)):
        print(f"  {prediction['label']:>8} ({prediction['score']:.2f})  {text}")
    return results


__all__ = ["run_demo"]
