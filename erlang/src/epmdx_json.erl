%% @doc A small, bounded JSON decoder (RFC 8259) for what etcd's JSON
%% gateway and the cluster records carry. OTP 25 has no json module, and
%% the adapter takes no dependencies outside OTP.
%%
%% decode/1 returns {ok, Term} or {error, Why}; it never raises and never
%% creates atoms: objects become maps with binary keys (a repeated key:
%% the last one wins, as most decoders do), strings UTF-8 binaries,
%% numbers integers or floats, and `true', `false', `null' those atoms.
%% Nesting deeper than ?MAX_DEPTH is refused; the caller bounds the input's
%% size (epmdx_cluster reads at most a few MiB), so the work is linear in
%% it.
-module(epmdx_json).

-export([decode/1, encode_string/1]).

-define(MAX_DEPTH, 32).

-spec decode(binary()) -> {ok, term()} | {error, term()}.
decode(Bin) when is_binary(Bin) ->
    try value(ws(Bin), 0) of
        {V, Rest} ->
            case ws(Rest) of
                <<>> -> {ok, V};
                _ -> {error, trailing_data}
            end
    catch
        throw:{json, Why} -> {error, Why};
        %% A bug here must not crash the caller; say what failed.
        error:Why -> {error, {internal, Why}}
    end;
decode(_) ->
    {error, not_a_binary}.

%% A JSON string literal for Bin (UTF-8 text), for request bodies.
-spec encode_string(binary()) -> binary().
encode_string(Bin) ->
    <<$", (<< <<(esc(C))/binary>> || <<C>> <= Bin >>)/binary, $">>.

esc($") -> <<"\\\"">>;
esc($\\) -> <<"\\\\">>;
esc(C) when C < 16#20 -> iolist_to_binary(io_lib:format("\\u~4.16.0b", [C]));
esc(C) -> <<C>>.

%% ------------------------------------------------------------------

fail(Why) -> throw({json, Why}).

ws(<<C, R/binary>>) when C =:= $\s; C =:= $\t; C =:= $\n; C =:= $\r -> ws(R);
ws(B) -> B.

value(_, D) when D > ?MAX_DEPTH -> fail(too_deep);
value(<<${, R/binary>>, D) -> object(ws(R), D + 1, #{});
value(<<$[, R/binary>>, D) -> array(ws(R), D + 1, []);
value(<<$", R/binary>>, _) -> string(R, []);
value(<<"true", R/binary>>, _) -> {true, R};
value(<<"false", R/binary>>, _) -> {false, R};
value(<<"null", R/binary>>, _) -> {null, R};
value(<<C, _/binary>> = B, _) when C =:= $-; C >= $0, C =< $9 -> number(B);
value(<<>>, _) -> fail(unexpected_end);
value(_, _) -> fail(unexpected_character).

object(<<$}, R/binary>>, _, Acc) when map_size(Acc) =:= 0 -> {Acc, R};
object(<<$", R/binary>>, D, Acc) ->
    {K, R1} = string(R, []),
    case ws(R1) of
        <<$:, R2/binary>> ->
            {V, R3} = value(ws(R2), D),
            Acc1 = Acc#{K => V},
            case ws(R3) of
                <<$,, R4/binary>> -> object_key(ws(R4), D, Acc1);
                <<$}, R4/binary>> -> {Acc1, R4};
                _ -> fail(bad_object)
            end;
        _ -> fail(bad_object)
    end;
object(_, _, _) -> fail(bad_object).

object_key(<<$", _/binary>> = B, D, Acc) -> object(B, D, Acc);
object_key(_, _, _) -> fail(bad_object).

array(<<$], R/binary>>, _, []) -> {[], R};
array(B, D, Acc) ->
    {V, R} = value(B, D),
    case ws(R) of
        <<$,, R1/binary>> -> array(ws(R1), D, [V | Acc]);
        <<$], R1/binary>> -> {lists:reverse([V | Acc]), R1};
        _ -> fail(bad_array)
    end.

%% Acc: iodata in reverse (chunks of unescaped bytes and escapes).
string(B, Acc) ->
    N = plain(B, 0),
    <<Chunk:N/binary, R/binary>> = B,
    case R of
        <<$", R1/binary>> ->
            Str = iolist_to_binary(lists:reverse([Chunk | Acc])),
            case unicode:characters_to_binary(Str) of
                Str -> {Str, R1};
                _ -> fail(invalid_utf8)
            end;
        <<$\\, E, R1/binary>> ->
            {Esc, R2} = escape(E, R1),
            string(R2, [Esc, Chunk | Acc]);
        _ ->
            fail(bad_string)
    end.

%% Bytes up to the next quote, backslash or control character.
plain(B, N) ->
    case B of
        <<_:N/binary, C, _/binary>> when C =/= $", C =/= $\\, C >= 16#20 -> plain(B, N + 1);
        _ -> N
    end.

escape($", R) -> {<<$">>, R};
escape($\\, R) -> {<<$\\>>, R};
escape($/, R) -> {<<$/>>, R};
escape($b, R) -> {<<8>>, R};
escape($f, R) -> {<<12>>, R};
escape($n, R) -> {<<10>>, R};
escape($r, R) -> {<<13>>, R};
escape($t, R) -> {<<9>>, R};
escape($u, R) ->
    {Hi, R1} = hex4(R),
    if
        Hi >= 16#D800, Hi =< 16#DBFF ->
            case R1 of
                <<"\\u", R2/binary>> ->
                    {Lo, R3} = hex4(R2),
                    case Lo >= 16#DC00 andalso Lo =< 16#DFFF of
                        true ->
                            Cp = 16#10000 + ((Hi - 16#D800) bsl 10) + (Lo - 16#DC00),
                            {<<Cp/utf8>>, R3};
                        false -> fail(bad_surrogate)
                    end;
                _ -> fail(bad_surrogate)
            end;
        Hi >= 16#DC00, Hi =< 16#DFFF -> fail(bad_surrogate);
        true -> {<<Hi/utf8>>, R1}
    end;
escape(_, _) -> fail(bad_escape).

hex4(<<A, B, C, D, R/binary>>) ->
    try {list_to_integer([A, B, C, D], 16), R}
    catch error:badarg -> fail(bad_escape)
    end;
hex4(_) -> fail(bad_escape).

%% -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
number(B) ->
    {Sign, R0} = case B of
                     <<$-, Rm/binary>> -> {"-", Rm};
                     _ -> {"", B}
                 end,
    {Int, R1} = case R0 of
                    <<$0, Rz/binary>> -> {"0", Rz};
                    <<C, _/binary>> when C >= $1, C =< $9 -> digits(R0, []);
                    _ -> fail(bad_number)
                end,
    {Frac, R2} = case R1 of
                     <<$., Rf/binary>> ->
                         case digits(Rf, []) of
                             {[], _} -> fail(bad_number);
                             {Fd, R3} -> {Fd, R3}
                         end;
                     _ -> {[], R1}
                 end,
    {Exp, R4} = case R2 of
                    <<E, Re/binary>> when E =:= $e; E =:= $E ->
                        {ES, RE} = case Re of
                                       <<$-, X/binary>> -> {"-", X};
                                       <<$+, X/binary>> -> {"", X};
                                       _ -> {"", Re}
                                   end,
                        case digits(RE, []) of
                            {[], _} -> fail(bad_number);
                            %% Bounded: no 1e999999999 floats.
                            {Ds, R5} when length(Ds) =< 4 -> {ES ++ Ds, R5};
                            _ -> fail(bad_number)
                        end;
                    _ -> {[], R2}
                end,
    case {Frac, Exp} of
        {[], []} when length(Int) =< 40 ->
            {list_to_integer(Sign ++ Int), R4};
        {[], []} ->
            fail(number_too_long);
        _ ->
            F = case Frac of [] -> "0"; _ -> Frac end,
            E1 = case Exp of [] -> "0"; _ -> Exp end,
            try {list_to_float(Sign ++ Int ++ "." ++ F ++ "e" ++ E1), R4}
            catch error:badarg -> fail(bad_number)
            end
    end.

digits(<<C, R/binary>>, Acc) when C >= $0, C =< $9 -> digits(R, [C | Acc]);
digits(R, Acc) -> {lists:reverse(Acc), R}.
