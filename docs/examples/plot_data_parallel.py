"""
=======================================================
Gradient reduction versus weight averaging on a cluster
=======================================================

:class:`skbatchnet.dask.DataParallel` trains one model on data spread over a
Dask cluster in one of two ways:

- ``strategy='gradient'``: every step's gradient is reduced across the
  workers, each summing over the batch's rows it holds. The steps are those
  of the in-memory ``fit``;
- ``strategy='average'``: each block of rows trains its own copy of the
  model for ``local_steps`` steps, then the copies' weights are averaged
  (local SGD). Fewer round trips, different steps.

To run in a few seconds, this example uses a ``LocalCluster`` of two worker
*threads* in this process (``processes=False``); on a real cluster the
workers are processes on other machines, and the code is the same.
"""

# %%
# The data, on the cluster
# ------------------------
#
# Two blocks of 800 rows, one per worker, sorted by the first feature so
# that the blocks cover different parts of the input space, as data stored
# by date or by region often does. The model and its settings are those of
# the in-memory estimator: SGD with momentum, batches of 100.
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
from distributed import Client, LocalCluster
from sklearn.datasets import make_regression

from skbatchnet import BatchMLPRegressor
from skbatchnet.dask import DataParallel

X, y = make_regression(n_samples=1600, n_features=10, noise=5.0, random_state=0)
y = np.sin(X[:, 0]) + y / y.std()
order = np.argsort(X[:, 0])
X, y = X[order], y[order]
cluster = LocalCluster(
    n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
)
client = Client(cluster)
dX = da.from_array(X, chunks=(800, -1))
dy = da.from_array(y, chunks=800)

settings = dict(
    hidden_layer_sizes=(16,),
    solver="sgd",
    learning_rate_init=0.02,
    max_iter=6,
    tol=0,
    random_state=0,
)

# %%
# The same model both ways
# ------------------------
#
# With ``strategy='gradient'`` the client draws the same batches from the
# same random stream as ``fit`` does in memory, and adds the workers' partial
# sums: the weights agree to rounding.
in_memory = BatchMLPRegressor(batch_size=100, **settings).fit(X, y)
reduced = DataParallel(BatchMLPRegressor(batch_size=100, **settings)).fit(dX, dy)
difference = max(
    np.abs(a - b).max() for a, b in zip(in_memory.coefs_, reduced.estimator_.coefs_)
)
print(f"largest weight difference, in memory vs on the cluster: {difference:.1e}")
assert difference < 1e-10

# %%
# Averaging weights every 1, 4 and 16 local steps
# -----------------------------------------------
#
# Each block trains on batches of 50 of its own rows, so one local step on
# both blocks touches as many rows as one reduced step of 100, and an epoch is
# 16 steps either way. The x-axis
# counts steps per worker. With ``strategy='average'``, ``loss_curve_`` is
# the objective of the averaged weights at the end of each epoch; with
# ``strategy='gradient'`` it is, as in memory, the epoch's running estimate
# (each batch's loss before its step), which runs slightly behind.
steps_per_epoch = 16
runs = {"gradient reduction (batch 100)": reduced}
for local_steps in (1, 4, 16):
    runs[f"weight averaging, {local_steps} local steps"] = DataParallel(
        BatchMLPRegressor(batch_size=50, **settings),
        strategy="average",
        local_steps=local_steps,
    ).fit(dX, dy)

fig, ax = plt.subplots(figsize=(6.4, 4))
for label, model in runs.items():
    curve = model.estimator_.loss_curve_
    ax.plot(steps_per_epoch * np.arange(1, len(curve) + 1), curve, "o-", label=label)
    mse = np.mean((model.predict(X) - y) ** 2)
    print(f"{label}: training MSE {mse:.4f}, {model.traffic_['steps']} round trips")
ax.set(xlabel="steps per worker", ylabel="training loss", yscale="log")
ax.legend()
plt.show()

# %%
# Gradient reduction does not care how the rows are spread over the workers:
# its steps are those of the in-memory fit. Averaging does. With one local
# step it stays close to the reduced step (with plain SGD and no momentum it
# would be exactly that step), while more local steps mean fewer round trips
# (``traffic_['steps']``) but copies that drift towards their own block's
# data before each average, so the loss falls less per step.

client.close()
cluster.close()
