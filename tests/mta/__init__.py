"""A rig that runs real mail servers (Postfix, Exim) on loopback and captures their logs.

Everything here talks to 127.0.0.1 only: the scripted remote servers, the fake resolver, the
MTA instances under test. Nothing is installed or started system-wide; see
scripts/install-test-servers.sh for what the rig expects on the machine.
"""
