"""Client APIs (core/service.py): each module here describes one service for the catalog."""
