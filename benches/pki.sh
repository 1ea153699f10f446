# Sourced by the benchmark scripts (compare.sh, callgrind.sh).
#
# make_pki DIR: an ECDSA P-256 CA with openssl, a server certificate for
# localhost / 127.0.0.1 and a client certificate with the SPIFFE URI
# spiffe://bench.local/ns/default/client, each with its key, in DIR (which
# must exist); also DIR/haproxy.pem (server certificate and key in one).
make_pki() {
    local d=$1
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null
    cat >"$d/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = compare.sh bench CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
EOF
    openssl req -x509 -new -key "$d/ca.key" -config "$d/ca.cnf" -days 7 -sha256 -out "$d/ca.pem" 2>/dev/null
    local who eku san
    for who in server client; do
        if [ $who = server ]; then
            eku=serverAuth
            san="subjectAltName = DNS:localhost,IP:127.0.0.1"
        else
            eku=clientAuth
            san="subjectAltName = URI:spiffe://bench.local/ns/default/client"
        fi
        cat >"$d/$who.ext" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = $eku
$san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$who.key" 2>/dev/null
        openssl req -new -key "$d/$who.key" -subj "/O=compare.sh/OU=bench/CN=bench-$who" \
            -out "$d/$who.csr" 2>/dev/null
        openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
            -days 7 -sha256 -extfile "$d/$who.ext" -out "$d/$who.pem" 2>/dev/null
    done
    cat "$d/server.pem" "$d/server.key" >"$d/haproxy.pem"
}
