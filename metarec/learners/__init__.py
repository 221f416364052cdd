"""Meta-learners, one file each; :mod:`metarec.catalog` imports them (they register on
import) beside the baselines."""
