"""The PPO controller and its health checks (Simic in the original Esper).

`networks` holds the feedforward and recurrent actor-critics, `buffer` the rollout buffer
with GAE, `ppo` the agent and its update loop (`ppo_config` its hyperparameters, `ppo_loss`
the clipped loss, `ppo_statistics` what an update reports), and `anomaly` the detector that
turns unhealthy statistics into warning events and escalates telemetry to DEBUG for a while.
"""
