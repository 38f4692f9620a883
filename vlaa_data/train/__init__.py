"""Training on an ``hf`` export with TRL: ``run_sft`` and ``run_grpo`` (the ``train`` extra).

config.py     TRL configs plus our fields, filled from a recipe, flags and --set
data.py       the export's split as a dataset in the format each trainer reads
freeze.py     which parts of a vision-language model train
rewards.py    the mixed reward as one TRL reward function per reward type
callbacks.py  KL coefficient annealing
run.py        what both share: loading the policy, training, saving, the run record
"""
