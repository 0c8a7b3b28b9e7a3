# help2roff.awk - the text of a command's --help as man(7) source.
#
# Reads the --help text on stdin and writes three parts, so that a page can
# be assembled from the help of a command and of its subcommands:
#   OUT ".syn"   the usage lines, for SYNOPSIS (between .nf and .fi)
#   OUT ".desc"  the paragraphs that are not under a heading: DESCRIPTION
#   OUT ".rest"  the sections: a line "options:" (any "word words:" line
#                that starts a paragraph) opens a section of that name;
#                "Exit codes" at the start of a line opens EXIT STATUS
# Variables: OUT (the prefix of the three files), LEVEL ("SH" for a page's
# own sections, "SS" for those of a subcommand appended to it).
#
# The help text conventions it relies on (every command follows them):
# "usage: " opens the usage lines, which last until a blank line; an
# indented block whose first line has a tag, two or more spaces and a text
# ("  -c, --config FILE   the YAML...", "  list     a table...") is a list
# of tagged items, a line indented to the text column or deeper continues
# the item; any other indented block is kept as it is (.nf). Nothing of the
# help is dropped: a page is exactly its --help, typeset.

function esc(s) {
    gsub(/\\/, "\\e", s)
    gsub(/-/, "\\-", s)
    if (s ~ /^[.']/)
        s = "\\&" s
    return s
}

function indent_of(s,    n) {
    n = match(s, /[^ ]/)
    return n ? n - 1 : length(s)
}

function trim(s) {
    sub(/^ +/, "", s)
    sub(/ +$/, "", s)
    return s
}

# Options and the first word of a tag in bold, metavariables in italics.
function fmt_tag(tag,    n, w, i, out, word, comma) {
    n = split(tag, w, / +/)
    out = ""
    for (i = 1; i <= n; i++) {
        word = w[i]
        comma = ""
        if (word ~ /,$/) {
            comma = ","
            word = substr(word, 1, length(word) - 1)
        }
        if (word ~ /^-/ || i == 1)
            word = "\\fB" esc(word) "\\fR"
        else if (word ~ /^[A-Z][A-Z0-9_:.]*$/)
            word = "\\fI" esc(word) "\\fR"
        else
            word = esc(word)
        out = out (i > 1 ? " " : "") word comma
    }
    return out
}

function emit(s) {
    if (target == "desc")
        print s > (OUT ".desc")
    else
        print s > (OUT ".rest")
}

function heading(name) {
    target = "rest"
    if (LEVEL == "SS")
        emit(".SS \"" name "\"")
    else
        emit(".SH \"" toupper(name) "\"")
    in_para = 0
}

# Splits an item line at its text column: sets g_tag, g_text, g_col (the
# 1-based column where the text starts, 0 when the line has no text).
function split_item(line, prev_col,    body, ind, m) {
    ind = indent_of(line)
    body = substr(line, ind + 1)
    m = match(body, /[^ ]  +[^ ]/)
    if (m) {
        g_tag = substr(body, 1, m)
        g_text = trim(substr(body, m + 1))
        g_col = ind + m + RLENGTH - 1
        return
    }
    if (prev_col > ind + 1 && length(line) >= prev_col &&
        substr(line, prev_col - 1, 1) == " " && substr(line, prev_col, 1) != " ") {
        g_tag = trim(substr(line, 1, prev_col - 1))
        g_text = trim(substr(line, prev_col))
        g_col = prev_col
        return
    }
    g_tag = trim(body)
    g_text = ""
    g_col = 0
}

function flush_block(    i, first, col, base, ind, tagged) {
    if (nblk == 0)
        return
    first = blk[1]
    base = indent_of(first)
    tagged = substr(first, base + 1, 1) == "-" || match(substr(first, base + 1), /[^ ]  +[^ ]/)
    if (tagged) {
        col = 0
        for (i = 1; i <= nblk; i++) {
            ind = indent_of(blk[i])
            if (i > 1 && (col ? ind + 1 >= col : ind > base)) {
                emit(esc(trim(blk[i])))
                continue
            }
            split_item(blk[i], col)
            if (g_col)
                col = g_col
            emit(".TP")
            emit(fmt_tag(g_tag))
            if (g_text != "")
                emit(esc(g_text))
        }
    } else {
        emit(".RS")
        emit(".nf")
        for (i = 1; i <= nblk; i++)
            emit(esc(substr(blk[i], base + 1)))
        emit(".fi")
        emit(".RE")
    }
    nblk = 0
    in_para = 0
}

BEGIN {
    target = "desc"
    state = "start"     # start, usage, text
    nblk = 0
    in_para = 0
    blank_before = 1
    section = ""
}

state == "start" && /^usage: / {
    state = "usage"
    print esc(substr($0, 8)) > (OUT ".syn")
    next
}

state == "usage" {
    if ($0 ~ /^ *$/) {
        state = "text"
        blank_before = 1
        next
    }
    line = $0
    if (substr(line, 1, 7) == "       ")
        line = substr(line, 8)
    print esc(line) > (OUT ".syn")
    next
}

{ state = "text" }

/^ *$/ {
    flush_block()
    in_para = 0
    blank_before = 1
    next
}

/^ / {
    blk[++nblk] = $0
    blank_before = 0
    next
}

{
    flush_block()
    if (blank_before && $0 ~ /^[A-Za-z][A-Za-z ]*:$/) {
        name = substr($0, 1, length($0) - 1)
        if (name ~ /^Exit codes$/)
            name = (LEVEL == "SS") ? "Exit status" : "EXIT STATUS"
        heading(name)
        section = name
        blank_before = 0
        next
    }
    if ($0 ~ /^Exit codes/) {
        heading((LEVEL == "SS") ? "Exit status" : "EXIT STATUS")
        section = "exit"
    } else if (target == "rest" && blank_before) {
        # A paragraph after a section's list belongs to the description.
        target = "desc"
        section = ""
    }
    if (!in_para) {
        emit(".PP")
        in_para = 1
    }
    emit(esc($0))
    blank_before = 0
}

END {
    flush_block()
    # Every part exists, even when empty.
    printf "" > (OUT ".syn")
    printf "" > (OUT ".desc")
    printf "" > (OUT ".rest")
}
