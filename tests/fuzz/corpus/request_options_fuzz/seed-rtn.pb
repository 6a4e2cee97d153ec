
rtn	
bits3

group_size64bias$