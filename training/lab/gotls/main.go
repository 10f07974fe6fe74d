// gotls: a stunnel-like TLS relay built on Go's crypto/tls, a TLS stack unlike OpenSSL's (its own
// ClientHello, key shares, session tickets and record sizes), as Go tunnels and proxies speak it.
//
//	gotls server -accept HOST:PORT -connect HOST:PORT -cert CERT -key KEY [-max 1.2]
//	gotls client -accept HOST:PORT -connect HOST:PORT [-local IP]
//
// The server takes TLS and hands the plain stream to -connect; the client takes plain TCP and
// carries it over TLS to -connect (certificates are not verified), from -local when given. Each
// connection is relayed both ways until both sides close. Exits 0 on SIGTERM or SIGINT.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "server" && os.Args[1] != "client") {
		fmt.Fprintln(os.Stderr, "usage: gotls server|client -accept HOST:PORT -connect HOST:PORT ...")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	accept := fs.String("accept", "", "HOST:PORT to listen on")
	connect := fs.String("connect", "", "HOST:PORT to relay each connection to")
	cert := fs.String("cert", "", "PEM certificate (server)")
	key := fs.String("key", "", "PEM private key (server)")
	max := fs.String("max", "1.3", "newest TLS version the server agrees to: 1.2 or 1.3")
	local := fs.String("local", "", "source address of the client's TLS connections")
	fs.Parse(os.Args[2:])
	if *accept == "" || *connect == "" {
		log.Fatal("-accept and -connect are required")
	}

	var ln net.Listener
	var err error
	dial := func() (net.Conn, error) { return net.Dial("tcp", *connect) }
	if mode == "server" {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			log.Fatalf("-cert/-key: %v", err)
		}
		versions := map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}
		v, ok := versions[*max]
		if !ok {
			log.Fatalf("-max %q: allowed values are 1.2, 1.3", *max)
		}
		ln, err = tls.Listen("tcp", *accept, &tls.Config{Certificates: []tls.Certificate{pair}, MaxVersion: v})
		if err != nil {
			log.Fatal(err)
		}
	} else {
		if ln, err = net.Listen("tcp", *accept); err != nil {
			log.Fatal(err)
		}
		d := &net.Dialer{}
		if *local != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(*local)}
		}
		dial = func() (net.Conn, error) {
			return tls.DialWithDialer(d, "tcp", *connect, &tls.Config{InsecureSkipVerify: true})
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ln.Close()
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go relay(c, dial)
	}
}

type closeWriter interface{ CloseWrite() error }

func relay(in net.Conn, dial func() (net.Conn, error)) {
	defer in.Close()
	out, err := dial()
	if err != nil {
		log.Printf("connect: %v", err)
		return
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	<-done
}
