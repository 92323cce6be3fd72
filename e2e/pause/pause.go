// The test cluster's pod sandbox ("pause") image: holds the pod's namespaces and exits on SIGTERM or
// SIGINT. registry.k8s.io/pause cannot be pulled here, so scripts/test-cluster.sh builds this one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
}
