"""What a finished run folder shows: `html` writes its report.html, `compare` sets several
runs side by side, `text` formats metrics for the terminal. Each reads the run folder
through `torchwork.runfolder`; none imports torch."""
