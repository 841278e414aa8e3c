"""``hf-ulmfit demo``: ULMFiT's three stages on the small samples shipped in ``hf_ulmfit/samples``, then a
``pipeline("text-classification")`` on the result. Sized to finish within about ten minutes on two CPU cores;
see ``samples/README.md`` for what the samples are and where they come from."""

import logging
import time
from pathlib import Path

from transformers import pipeline

from . import stages

logger = logging.getLogger(__name__)

SAMPLES = Path(__file__).parent / "samples"
EXAMPLES = [
    "A moving story with wonderful performances; I was gripped from start to finish.",
    "Dull, predictable and far too long. I want those two hours of my life back.",
    "The plot was thin, but the music and the photography were beautiful.",
]

# A small AWD-LSTM (the paper's is 400/1152/3 with a 60k vocabulary) so that stage 1 sees enough text in minutes.
DEMO_MODEL = "embedding_size=128,hidden_size=256,num_hidden_layers=3"
DEMO_VOCAB_SIZE = 4000


def run_demo(output_dir: str = "ulmfit-demo", seed: int = 42) -> dict[str, dict[str, float]]:
    """Runs stage 1 (pretrain on Wikipedia text), stage 2 (fine-tune the LM on IMDb reviews) and stage 3 (a
    sentiment classifier on 1,000 labelled reviews, evaluated on 500 test reviews); returns each stage's metrics."""
    root = Path(output_dir)
    results, started = {}, time.time()

    def stage(name, run, **arguments):
        """One stage with the recipe's defaults (hf_ulmfit.recipe) and the demo's own settings."""
        logger.info("===== %s =====", name)
        demo = {"output_dir": str(root / name), "seed": seed, "save_strategy": "no", "logging_steps": 20}
        results[name] = run(**demo, disable_tqdm=False, dataloader_pin_memory=False, **arguments)
        logger.info("%s done after %.0f s in total", name, time.time() - started)

    stage(
        "1-pretrain",
        stages.pretrain,
        vocab_size=DEMO_VOCAB_SIZE,
        config_overrides=DEMO_MODEL,
        train_file=str(SAMPLES / "wikipedia.parquet"),
        validation_split_percentage=3,
    )
    stage(
        "2-finetune-lm",
        stages.finetune_language_model,
        model_name_or_path=str(root / "1-pretrain"),
        dropout_multiplier=0.5,  # a small LM on little text
        train_file=str(SAMPLES / "imdb_unlabelled.parquet"),
        num_train_epochs=1,
    )
    stage(
        "3-classifier",
        stages.train_classifier,
        model_name_or_path=str(root / "2-finetune-lm"),
        dropout_multiplier=0.5,
        train_file=str(SAMPLES / "imdb_train.parquet"),
        validation_file=str(SAMPLES / "imdb_test.parquet"),
        num_train_epochs=4,
        learning_rate=2e-2,  # the demo's small LM needs a higher rate than the paper's 1e-2
        per_device_train_batch_size=32,
    )

    classify = pipeline("text-classification", model=str(root / "3-classifier"))
    print("\nULMFiT demo results")
    print(f"  stage 1 validation perplexity (Wikipedia): {results['1-pretrain']['eval_perplexity']:.1f}")
    print(f"  stage 2 validation perplexity (IMDb):      {results['2-finetune-lm']['eval_perplexity']:.1f}")
    print(f"  stage 3 test accuracy (500 IMDb reviews):  {results['3-classifier']['eval_accuracy']:.3f}")
    print(f"  wall time: {time.time() - started:.0f} s; classifier saved in {root / '3-classifier'}\n")
    for text, prediction in zip(EXAMPLES, classify(EXAMPLES)):
        print(f"  {prediction['label']:>8} ({prediction['score']:.2f})  {text}")
    return results


__all__ = ["run_demo"]
