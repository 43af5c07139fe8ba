#!/bin/sh
# Docker build helper: creates an empty source file for every target of ./Cargo.toml whose
# file is missing, so that `cargo build` can run before the sources are there (the
# dependency-caching layer) or without files kept out of the build context (tests/).
# Prints the paths it created, one a line.
#
# Targets: [lib] and [[bin]]/[[bench]]/[[test]]/[[example]] entries, with their `path` or
# Cargo's default path for the name; src/main.rs when nothing else names a crate root.
set -eu
manifest=${1:-Cargo.toml}

awk '
    function flush() {
        if (kind == "") return
        if (path == "") {
            if (kind == "lib") path = "src/lib.rs"
            else if (kind == "bin") path = (name == "" ? "src/main.rs" : "src/bin/" name ".rs")
            else if (kind == "bench") path = "benches/" name ".rs"
            else if (kind == "test") path = "tests/" name ".rs"
            else if (kind == "example") path = "examples/" name ".rs"
        }
        if (path != "") print kind " " path
        kind = ""; name = ""; path = ""
    }
    function value(line) {
        sub(/^[^=]*=[ \t]*/, "", line)
        sub(/[ \t]*(#.*)?$/, "", line)
        gsub(/^["\047]|["\047]$/, "", line)
        return line
    }
    /^[ \t]*\[\[(bin|bench|test|example)\]\][ \t]*$/ {
        flush(); kind = $0; gsub(/[][ \t]/, "", kind); next
    }
    /^[ \t]*\[lib\][ \t]*$/ { flush(); kind = "lib"; next }
    /^[ \t]*\[/ { flush(); next }
    kind != "" && /^[ \t]*name[ \t]*=/ { name = value($0); next }
    kind != "" && /^[ \t]*path[ \t]*=/ { path = value($0); next }
    END { flush() }
' "$manifest" >/tmp/cargo-targets.$$

# A bin named like the package with no path is src/main.rs (Cargo's default).
package=$(awk '/^\[package\]/{p=1; next} /^\[/{p=0} p && /^[ \t]*name[ \t]*=/{sub(/^[^=]*=[ \t]*"/,""); sub(/".*/,""); print; exit}' "$manifest")

roots=0
while read -r kind path; do
    if [ "$kind" = bin ] && [ "$path" = "src/bin/$package.rs" ]; then
        path=src/main.rs
    fi
    case $kind in lib | bin) roots=$((roots + 1)) ;; esac
    if [ ! -e "$path" ]; then
        mkdir -p "$(dirname "$path")"
        if [ "$kind" = lib ]; then : >"$path"; else echo 'fn main() {}' >"$path"; fi
        echo "$path"
    fi
done </tmp/cargo-targets.$$
rm -f /tmp/cargo-targets.$$

if [ "$roots" -eq 0 ] && [ ! -e src/main.rs ] && [ ! -e src/lib.rs ]; then
    mkdir -p src
    echo 'fn main() {}' >src/main.rs
    echo src/main.rs
fi
