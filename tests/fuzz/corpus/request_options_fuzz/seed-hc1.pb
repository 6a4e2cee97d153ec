
hc1
	class_max4
n225,1600
presetunet^layer\.(0|1)\.