"""Deploy: roll the pushed version out (canary on a cluster; alias moves locally)."""
