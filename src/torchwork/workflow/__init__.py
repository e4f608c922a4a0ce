"""Step 6, all together: the six steps in order, one module a part.

    session      steps 1 and 2 (data, model, loss, optimizer), `run` and `resume`
    checkpoints  what a checkpoint holds, written and read side by side; when to write one
    train        step 3: fit with checkpoints, Ctrl-C and SIGTERM stopping cleanly
    finish       steps 4 to 6: evaluate, save and check the model files, the run folder

Nothing is imported here: `torchwork.workflow.session.run` is `torchwork.run`.
"""
