"""Step 6, all together: the six steps in order, one module a part.

    run          run(config) and resume(folder); setup does steps 1 and 2
    session      Session: steps 1 and 2 done, what the later steps use
    train        step 3: fit with checkpoints
    checkpoints  what a checkpoint holds (checkpoint_contents and restore, side by side),
                 when one is written; TensorBoard logging
    signals      Ctrl-C and SIGTERM stopping cleanly, a second one at once
    finish       steps 4 to 6: evaluate, save and check the model files, the run folder

Nothing is imported here: `torchwork.workflow.run.run` is `torchwork.run`.
"""
