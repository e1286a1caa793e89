# 非工作时间：何时重新开门、网站，以及来电者现在可以做什么。

hours-closed = 现在工作人员不在。
hours-next-opening =
    我们{ $day ->
        [today] 今天
        [tomorrow] 明天
       *[other] { $weekday ->
            [1] 星期一
            [2] 星期二
            [3] 星期三
            [4] 星期四
            [5] 星期五
            [6] 星期六
           *[7] 星期天
        }
    } { $hour } 点{ $minute ->
        [0] {""}
        [30] 半
       *[other] { $minute } 分
    }重新开门。
hours-portal = 更多信息请看 integrazionemigranti 点 gov 点 it。
hours-options = 需要回电，请按 1。听您附近的服务，随时可用，请按 2。
