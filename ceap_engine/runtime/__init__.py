"""What the interpreter runs against: clocks (real and virtual), task runners, Step Functions Local mocks."""
