"""The Kafka contract: the one Faust app, every topic, and (as they are added) every record."""
