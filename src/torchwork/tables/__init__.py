"""Your own data, step 1 for tables: read a file (read, arrow), check its columns and find
the task (check), encode rows as model inputs and outputs back (encode, convert).

Nothing is imported here: reading a table starts on a thread while torch imports, and
`read` must not wait for torch.
"""
