# shellcheck shell=sh
# shellcheck disable=SC2034 # fence_* are set here for the scripts that source this file
# Checks of the arguments quorumsign hands a fence hook: sourced by the fence scripts.
# Every argument is hostile until checked: a node id and a term are decimal numbers, an
# address is an IP literal with a port (IPv4 a.b.c.d:PORT, IPv6 [x:y::z]:PORT), and the
# reason is kept to one line of printable text. A script stops with exit 2 on the first
# argument that does not pass, naming it; nothing has run by then.

fence_refuse() {
    echo "$1" >&2
    exit 2
}

# A decimal number of 1 to 20 digits.
fence_number() {
    case "$2" in
        '' | *[!0-9]*) fence_refuse "bad $1: not a decimal number" ;;
    esac
    [ "${#2}" -le 20 ] || fence_refuse "bad $1: too long"
}

# Sets fence_ip (the address without port or brackets) and fence_family (ip or ip6) from
# an IP:PORT argument.
fence_address() {
    a=$1
    case "$a" in
        \[*\]:*)
            fence_ip=${a%]:*}
            fence_ip=${fence_ip#\[}
            port=${a##*]:}
            fence_family=ip6
            case "$fence_ip" in
                '' | *[!0-9a-fA-F:]*) fence_refuse "bad address: not an IPv6 literal" ;;
                *:*) ;;
                *) fence_refuse "bad address: not an IPv6 literal" ;;
            esac
            [ "${#fence_ip}" -le 39 ] || fence_refuse "bad address: not an IPv6 literal"
            ;;
        *:*)
            fence_ip=${a%:*}
            port=${a##*:}
            fence_family=ip
            case "$fence_ip" in
                '' | *[!0-9.]* | .* | *. | *..*) fence_refuse "bad address: not an IPv4 literal" ;;
            esac
            octets=0
            rest=$fence_ip
            while [ -n "$rest" ]; do
                o=${rest%%.*}
                case "$rest" in *.*) rest=${rest#*.} ;; *) rest= ;; esac
                octets=$((octets + 1))
                if [ "${#o}" -gt 3 ] || [ "$o" -gt 255 ]; then
                    fence_refuse "bad address: octet out of range"
                fi
            done
            [ "$octets" -eq 4 ] || fence_refuse "bad address: not an IPv4 literal"
            ;;
        *) fence_refuse "bad address: expected IP:PORT or [IPv6]:PORT" ;;
    esac
    case "$port" in
        '' | *[!0-9]*) fence_refuse "bad address: port is not a number" ;;
    esac
    if [ "${#port}" -gt 5 ] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
        fence_refuse "bad address: port out of range"
    fi
}

# A host name (or user@host) for ssh or a BMC: letters, digits, '.', '-', '_' and one '@'.
fence_host() {
    case "$2" in
        '' | -* | *[!A-Za-z0-9.@_-]* | *@*@*) fence_refuse "bad $1: not a host name" ;;
    esac
}

# NODE ADDRESS TERM REASON as quorumsign appends them: sets fence_node, fence_ip,
# fence_family, fence_term and fence_reason (one line, printable).
fence_args() {
    fence_number "node id" "$1"
    fence_address "$2"
    fence_number "term" "$3"
    fence_node=$1
    fence_term=$3
    fence_reason=$(printf '%s' "$4" | tr -c '[:print:]' ' ' | cut -c1-400)
}
