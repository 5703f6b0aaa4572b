"""Thin transports: parse input, build a Caller, call one service method, render."""
