"""placeholder"""
SCENARIOS: list = []
