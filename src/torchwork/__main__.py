from torchwork.cli import entry

entry()
