%% The body of every IP wrapper (epmdx_tcp_dist, epmdx_tcp6_dist,
%% epmdx_tls_dist, epmdx_tls6_dist): OTP's own distribution module ?MOD,
%% registered with epmdx as ?PROTO (with_transport/2 around listen) and
%% chosen per peer by epmdx_select. A TLS wrapper defines TLS before the
%% include: it adds childspecs/0 (net_kernel starts ssl_dist_sup through
%% it) and asks inet_tls_dist for is_node_name/1, as OTP's inet6_tls_dist
%% has none of its own; the TCP wrappers add setopts/2 and getopts/2.
%%
%% Each wrapper module is three lines: its -module, ?PROTO and ?MOD, then
%% this include.

-export([listen/1, listen/2, accept/1, accept_connection/5, setup/5, close/1,
         select/1, address/0, is_node_name/1]).

-ifdef(TLS).
-export([childspecs/0]).

%% Starts ssl_dist_sup (net_kernel asks every -proto_dist module).
childspecs() ->
    ?MOD:childspecs().

is_node_name(Node) ->
    inet_tls_dist:is_node_name(Node).
-else.
-export([setopts/2, getopts/2]).

is_node_name(Node) ->
    ?MOD:is_node_name(Node).

setopts(S, Opts) ->
    ?MOD:setopts(S, Opts).

getopts(S, Opts) ->
    ?MOD:getopts(S, Opts).
-endif.

listen(Name) ->
    {ok, Host} = inet:gethostname(),
    listen(Name, Host).

listen(Name, Host) ->
    epmdx_epmd:with_transport(?PROTO, fun() -> ?MOD:listen(Name, Host) end).

accept(Listen) ->
    ?MOD:accept(Listen).

accept_connection(AcceptPid, Socket, MyNode, Allowed, SetupTime) ->
    ?MOD:accept_connection(AcceptPid, Socket, MyNode, Allowed, SetupTime).

setup(Node, Type, MyNode, LongOrShortNames, SetupTime) ->
    ?MOD:setup(Node, Type, MyNode, LongOrShortNames, SetupTime).

close(Listen) ->
    ?MOD:close(Listen).

select(Node) ->
    epmdx_select:select(?PROTO, Node).

address() ->
    ?MOD:address().
