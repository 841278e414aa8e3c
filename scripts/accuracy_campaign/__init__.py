"""The accuracy campaign of ``scripts/reproduce_accuracy.py`` (issues 5 and 13), one concern a module:

protocol   the tasks, the methods and the stage-3 settings each trains with; the stage-2 budget
records    the results file: what a record is reported as, what identifies a run
draws      the data files every run reads (balanced label draws, test samples, stage-2 corpora)
runs       stages 2 and 3 through hf_ulmfit.stages, ulmfit_tuned's selection, the bidirectional ensemble
baselines  TF-IDF, MiniLM, features_lr, SetFit and fastai's recipe
tables     the report's tables
plots      the report's plots
"""
