"""Request processing: the runloop phases, upstream request, balancer and log (kong/runloop/, kong/init.lua)."""
