"""Activations stage: hidden states of a chosen GPTRec block at every real position, as rows
(user, position, item, activation vector). ``extract`` is plain torch; the Ray Data pipeline that
streams users through an actor pool and writes Parquet shards sits beside it."""
