# Out of hours: when we open again, the portal, and what the caller can do now.

hours-closed = Our operators are not available right now.
hours-next-opening =
    { $day ->
        [today] We open again today at { $hour12 }{ $minute ->
            [0] {""}
           *[other] { " " }{ $minute }
        } { $half_day ->
            [am] a.m.
           *[pm] p.m.
        }.
        [tomorrow] We open again tomorrow at { $hour12 }{ $minute ->
            [0] {""}
           *[other] { " " }{ $minute }
        } { $half_day ->
            [am] a.m.
           *[pm] p.m.
        }.
       *[other] We open again on { $weekday ->
            [1] Monday
            [2] Tuesday
            [3] Wednesday
            [4] Thursday
            [5] Friday
            [6] Saturday
           *[7] Sunday
        } at { $hour12 }{ $minute ->
            [0] {""}
           *[other] { " " }{ $minute }
        } { $half_day ->
            [am] a.m.
           *[pm] p.m.
        }.
    }
hours-portal = You can find a lot of information at integrazionemigranti dot gov dot it.
hours-options = To be called back, press 1. To hear the services near you, available at any time, press 2.
