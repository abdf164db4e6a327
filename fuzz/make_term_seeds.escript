#!/usr/bin/env escript
%% Writes the seed inputs of the `etf_decode` and `dist_packet` targets,
%% fuzz/corpus/<target>/seed-*, from real term_to_binary output.
%%
%% Run from anywhere: escript fuzz/make_term_seeds.escript (or
%% `erl -noshell`-equivalent; no -sname, no epmd: pids, references and ports
%% belong to nonode@nohost). The corpus was made with OTP 25.
%%
%% etf_decode: each seed is one standalone term (131 first), in the encoding
%% named by its suffix: v2 = {minor_version, 2} (UTF-8 atoms, NEW_FLOAT_EXT),
%% v1 = OTP 25's default (Latin-1 atoms where possible), v0 = FLOAT_EXT
%% floats, z = compressed.
%%
%% dist_packet: each seed is a pass-through packet body as a node sends it
%% after the u32 length: 112, term_to_binary(Control), then, for the
%% operations that carry one, term_to_binary(Payload).

%% Compiled, so closures are the module's own funs (NEW_FUN_EXT with just
%% their free variables), not erl_eval's interpreter closures.
-mode(compile).

main(_) ->
    Dir = filename:dirname(filename:absname(escript:script_name())),
    Etf = filename:join([Dir, "corpus", "etf_decode"]),
    Pkt = filename:join([Dir, "corpus", "dist_packet"]),
    ok = filelib:ensure_dir(filename:join(Etf, "x")),
    ok = filelib:ensure_dir(filename:join(Pkt, "x")),
    [write(Etf, Name, term_to_binary(T, Opts)) || {Name, T, Opts} <- terms()],
    [write(Pkt, Name, packet(Ctrl, Payload)) || {Name, Ctrl, Payload} <- packets()],
    ok.

write(Dir, Name, Bin) ->
    ok = file:write_file(filename:join(Dir, "seed-" ++ Name), Bin).

packet(Ctrl, none) -> [112, term_to_binary(Ctrl)];
packet(Ctrl, Payload) -> [112, term_to_binary(Ctrl), term_to_binary(Payload)].

v2() -> [{minor_version, 2}].

nest(0, Acc) -> Acc;
nest(N, Acc) -> nest(N - 1, [Acc]).

terms() ->
    Self = self(),
    Ref = make_ref(),
    Port = hd(erlang:ports()),
    X = 42,
    Y = <<"captured">>,
    Closure = fun(Z) -> {X, Y, Z} end,
    Big = 1 bsl 2100,
    [{"atoms-v2", [ok, '', 'hello world', 'Quoted', 'ñandú', 'жук', 'a\'b', true], v2()},
     {"atoms-v1", {ok, 'ñandú', 'жук'}, []},
     {"atom-255-v2", list_to_atom(lists:duplicate(255, $ж)), v2()},
     {"ints-v2", [0, 255, 256, -1, 2147483647, -2147483648, 2147483648,
                  -2147483649, 1 bsl 63, -(1 bsl 63), 1 bsl 64, -(1 bsl 64)], v2()},
     {"bigint-large-v2", {Big, -Big}, v2()},
     {"floats-v2", [0.0, -0.0, 1.5, -2.25, 1.0e300, 5.0e-324, 3.141592653589793,
                    9007199254740992.0, 0.1], v2()},
     {"floats-v0", [0.0, 1.5, -1.0e-300, 3.141592653589793], [{minor_version, 0}]},
     {"binaries-v2", [<<>>, <<"hello">>, <<1, 2, 3>>, <<"é"/utf8>>, <<0, 255>>], v2()},
     {"bitstrings-v2", [<<1:1>>, <<1, 2, 3:5>>, <<255:7>>], v2()},
     {"strings-v2", ["", "hello", "a\nb\"c", [233, 256, 1078], lists:seq(0, 255)], v2()},
     {"lists-v2", [[1, 2, 3], [a | b], [1, 2 | 3], [a, [b, [c]]], [[]], [{}]], v2()},
     {"long-list-v2", lists:seq(1, 300), v2()},
     {"tuples-v2", [{}, {ok, 1}, {{a}, {b, {c}}}], v2()},
     {"large-tuple-v2", list_to_tuple(lists:seq(1, 300)), v2()},
     {"maps-v2", [#{}, #{a => 1, <<"k">> => [1], {t} => #{x => y}}], v2()},
     {"map-40-keys-v2", maps:from_list([{I, integer_to_list(I)} || I <- lists:seq(1, 40)]), v2()},
     {"pid-v2", Self, v2()},
     {"ref-v2", Ref, v2()},
     {"alias-v2", alias(), v2()},
     {"port-v2", Port, v2()},
     {"export-v2", [fun lists:map/2, fun erlang:'+'/2], v2()},
     {"closure-v2", Closure, v2()},
     {"closure-nested-v2", {fun() -> Closure end, fun(A, B) -> A + B end}, v2()},
     {"identifiers-in-map-v2", #{Self => Ref, Port => [Self]}, v2()},
     {"nest-100-v2", nest(100, x), v2()},
     {"nest-300-v2", nest(300, []), v2()},
     {"nest-mixed-v2", lists:foldl(fun(I, A) when I rem 3 =:= 0 -> {A};
                                      (I, A) when I rem 3 =:= 1 -> #{A => I};
                                      (_, A) -> [A | tail] end, leaf, lists:seq(1, 60)), v2()},
     {"gen-call-v2", {'$gen_call', {Self, Ref}, {is_auth, 'erl@localhost'}}, v2()},
     {"record-v1", {state, "name", 1.5, <<"bin">>, #{}, [], undefined}, []},
     {"compressed-z", lists:duplicate(200, hello), [compressed]},
     {"compressed-binary-z", <<0:80000>>, [{compressed, 9}, {minor_version, 2}]}].

packets() ->
    Self = self(),
    To = spawn(fun() -> receive stop -> ok end end),
    Ref = make_ref(),
    Token = {0, 'tok', 1, Self, 0},
    Msg = {hello, [1, 2, 3], <<"world">>, #{k => v}},
    [{"send-sender", {22, Self, To}, Msg},
     {"send", {2, '', To}, Msg},
     {"send-tt", {12, '', To, Token}, Msg},
     {"send-sender-tt", {23, Self, To, Token}, Msg},
     {"reg-send-ping", {6, Self, '', net_kernel},
      {'$gen_call', {Self, Ref}, {is_auth, 'erl@localhost'}}},
     {"reg-send-rpc", {6, Self, '', rex}, {call, erlang, node, [], Self}},
     {"reg-send-tt", {16, Self, '', rex, Token}, {call, lists, seq, [1, 3], Self}},
     {"link", {1, Self, To}, none},
     {"exit", {3, Self, To, normal}, none},
     {"exit2", {8, Self, To, kill}, none},
     {"exit-tt", {13, Self, To, Token, {shutdown, x}}, none},
     {"exit2-tt", {18, Self, To, Token, boom}, none},
     {"monitor-pid", {19, Self, To, Ref}, none},
     {"monitor-name", {19, Self, some_name, Ref}, none},
     {"demonitor", {20, Self, To, Ref}, none},
     {"monitor-exit", {21, To, Self, Ref, noproc}, none},
     {"payload-exit", {24, Self, To}, {shutdown, because}},
     {"payload-exit-tt", {25, Self, To, Token}, normal},
     {"payload-exit2", {26, Self, To}, kill},
     {"payload-exit2-tt", {27, Self, To, Token}, kill},
     {"payload-monitor-exit", {28, To, Self, Ref}, noconnection},
     {"payload-monitor-exit-name", {28, some_name, Self, Ref}, {'EXIT', x}},
     {"unlink-id", {35, 17, Self, To}, none},
     {"unlink-id-ack", {36, 1 bsl 40, To, Self}, none},
     {"group-leader", {7, Self, To}, none},
     {"spawn-request", {29, Ref, Self, Self, {erlang, apply, 2}, [monitor]}, [fun erlang:node/0, []]},
     {"alias-send", {33, Self, alias()}, Msg}].
