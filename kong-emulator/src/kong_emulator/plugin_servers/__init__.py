"""External plugin servers: process management, the MessagePack RPC and the PDK bridge
(kong/runloop/plugin_servers/)."""
