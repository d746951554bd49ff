"""Federated learning protocols: vertical (features split across parties) and, later,
horizontal (samples split). Sans-I/O roles over :class:`~rainbridge.net.channel.Channel`,
built on the MPC engine (:mod:`rainbridge.protocols.mpc`)."""
