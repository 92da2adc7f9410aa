"""`invbench run --cluster`: a suite split into shards and run as Ray tasks.

shards.py plans the shards (one case each: all its backends, dtypes and modes on one
device) and the rows a shard owes; task.py is what a worker runs; driver.py submits
the shards, streams their rows into the result directory and turns a dead or silent
worker into rows. Ray is imported only by driver.py, and only when a run asks for it.
"""
