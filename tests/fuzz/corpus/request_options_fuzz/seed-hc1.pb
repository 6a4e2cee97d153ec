
hc1
presetunet
	class_max4
n225,1600^layer\.(0|1)\.