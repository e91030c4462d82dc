// Command saslbroker runs an embedded Kafka broker (franz-go's kfake) that
// requires SASL/PLAIN and enforces ACLs, for the Python client's tests of
// authentication and authorization failures. User "admin" (password
// "admin-secret") is a superuser; user "nobody" ("nobody-secret") has no ACL,
// so every read is denied. It listens on 127.0.0.1:<port>, seeds the topic,
// prints "ready", and runs until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	port := flag.Int("port", 0, "port on 127.0.0.1")
	topic := flag.String("topic", "market.feedback", "topic to create")
	flag.Parse()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(*port),
		kfake.EnableSASL(),
		kfake.EnableACLs(),
		kfake.Superuser("PLAIN", "admin", "admin-secret"),
		kfake.User("PLAIN", "nobody", "nobody-secret"),
		kfake.SeedTopics(1, *topic),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println("ready", c.ListenAddrs())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
