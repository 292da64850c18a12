"""Measurements that run the model, beside evaluation: `repr_rank` (final-layer representations of a base, with or
without an adapter, on a task's test items). What they write is read by the leaderboard from files; the leaderboard
never imports this package."""
