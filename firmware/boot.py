# Runs first at every boot. Kept small: the agent's modules load in main.py.
import gc

gc.collect()
