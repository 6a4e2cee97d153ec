
nope(