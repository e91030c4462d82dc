package pgtemp

var TimescaleInstalled = timescaleInstalled
