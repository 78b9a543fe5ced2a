"""placeholder"""

def add_shape_commands(sub):
    pass
