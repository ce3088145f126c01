import logging

logging.getLogger("absl").setLevel(logging.ERROR)
