"""RASP programs: the program model, readable text, and the function library."""
