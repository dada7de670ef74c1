"""Messages, channels, endpoints, interceptors and conversion: the messaging core."""
